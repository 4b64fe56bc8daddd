"""The playground and the runs dashboard in a real headless Chromium (Debian's `chromium`), driven by Playwright.

`.ci/run` installs Chromium with apt-get where it is missing; without one these tests skip with a reason.
"""

import os
import shutil

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    yield page
    page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    context.close()


def screenshot(page, tmp_path, name: str):
    """Kept beside the test's files, and under $PICO_LLM_SCREENSHOTS when set (for people to look at)."""
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("PICO_LLM_SCREENSHOTS"):
        os.makedirs(os.environ["PICO_LLM_SCREENSHOTS"], exist_ok=True)
        shutil.copy(tmp_path / name, os.path.join(os.environ["PICO_LLM_SCREENSHOTS"], name))
    assert (tmp_path / name).stat().st_size > 0


def test_the_playground_streams_the_apis_text(served, page, tmp_path):
    server, _ = served
    page.goto(server.url + "/")
    page.wait_for_selector("#model option[value=transformer]", state="attached")
    page.select_option("#model", "transformer")
    page.fill("#prompt", "Cleo said: the")
    page.fill("#temperature", "0.7")
    page.fill("#top_k", "20")
    page.fill("#seed", "5")
    page.fill("#max_tokens", "60")
    page.click("#generate")
    page.wait_for_selector("body[data-state=done]")
    shown = page.text_content("#completion")
    expected = server.client.completions.create(model="transformer", prompt="Cleo said: the", max_tokens=60,
                                                temperature=0.7, seed=5, extra_body={"top_k": 20}).choices[0].text
    assert shown == expected and len(shown) > 0
    assert "tokens/s" in page.text_content("#status")
    screenshot(page, tmp_path, "playground.png")


def test_the_stop_button_stops_a_long_generation(served, page):
    server, _ = served
    page.goto(server.url + "/")
    page.wait_for_selector("#model option[value=cnn]", state="attached")
    page.select_option("#model", "cnn")
    page.fill("#max_tokens", "4000")
    page.click("#generate")
    page.wait_for_function("document.getElementById('completion').textContent.length > 0")
    page.click("#stop")
    page.wait_for_selector("body[data-state=done]")
    assert page.text_content("#status") == "stopped"
    assert len(page.text_content("#completion")) < 4000


def test_the_runs_page_overlays_the_selected_curves(served, page, tmp_path):
    server, _ = served
    page.goto(server.url + "/runs")
    page.wait_for_selector("body[data-state=ready]")
    assert sorted(page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")) == ["cnn", "transformer"]
    page.click("#runs th[data-key=params]")  # sortable: by size, smallest first
    sizes = page.eval_on_selector_all("#runs tbody tr td:nth-child(4)", "cells => cells.map(c => c.textContent)")
    assert sizes == sorted(sizes, key=lambda s: int(s.replace(",", "")))
    for row in ("cnn", "transformer"):
        page.check(f"#runs tr[data-run={row}] input[type=checkbox]")
    page.wait_for_function("document.querySelectorAll('#by-step polyline.curve').length === 2")
    assert page.eval_on_selector_all("#by-time polyline.curve", "lines => lines.length") == 2
    screenshot(page, tmp_path, "runs.png")


def test_a_run_page_shows_config_samples_and_curves(served, page, tmp_path):
    server, _ = served
    page.goto(server.url + "/runs/transformer")
    page.wait_for_selector("body[data-state=ready]")
    assert '"name": "transformer"' in page.text_content("#config")
    assert "=== step" in page.text_content("#samples")
    assert page.eval_on_selector_all("#by-step polyline.curve", "lines => lines.length") == 1
    screenshot(page, tmp_path, "run.png")
