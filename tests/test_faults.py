"""Faults lose nothing: stop signals at random moments and kill -9 inside every kind of write.

After each fault the run folder loads and continuing it (resume, or a retry when nothing was saved)
finishes with final weights bit for bit equal to an uninterrupted run's (CPU, float32, dropout 0.1),
and a metrics log with every step exactly once.

The long version: `make fault-probe` (PICO_FAULT_KILLS=100: 100 kill -9 at random moments).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from pico_llm.cli import main
from pico_llm.inference.loading import load_run
from pico_llm.training.checkpoint import load_checkpoint

from .conftest import REPO

STEPS = 40
EVAL_EVERY = 10
SIGNAL_MOMENTS = 10
RANDOM_KILLS = int(os.environ.get("PICO_FAULT_KILLS", "3"))
SEED = int(os.environ.get("PICO_FAULT_SEED", "20261130"))
RUNNER = Path(__file__).with_name("fault_runner.py")

# Kills injected inside writes: (file, which write of it); a second pair kills the resume that follows.
INJECTED = [
    [("config.json", 1)],  # start-up: the run folder's first file
    [("checkpoint.pt", 1)],  # the first checkpoint: nothing saved yet
    [("checkpoint.pt", 2)],
    [("model.safetensors", 1)],  # the best weights
    [("metrics.jsonl", 6)],  # a line torn half-way
    [("checkpoint.pt", 2), ("config.json", 1)],  # then inside the resume's rewrite of config.json
]


def train_args(data: Path, out: Path) -> list[str]:
    config = out.parent / "no_config.json"
    config.write_text("{}")
    return ["train", "--config", str(config), "--data", str(data), "--model", "kgram_cnn", "--width", "24",
            "--n-layers", "2", "--dropout", "0.1", "--context", "32", "--batch-size", "32", "--max-steps", str(STEPS),
            "--eval-every", str(EVAL_EVERY), "--log-every", "1", "--eval-tokens", "256", "--sample-tokens", "4",
            "--dtype", "float32", "--device", "cpu", "--warmup-steps", "2", "--out", str(out)]


def weights(out: Path) -> dict:
    return load_checkpoint(out / "checkpoint.pt")["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run in this process: its final weights, how long its training loop takes (the signal
    moments spread over start-up, the loop and the start of the final eval) and how long it all takes."""
    root = tmp_path_factory.mktemp("faults")
    data = root / "data.txt"
    data.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog, café №{i % 7}.\n" for i in range(150)))
    started = time.perf_counter()
    assert main(train_args(data, root / "run")) == 0
    seconds = time.perf_counter() - started
    final = json.loads((root / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    return {"data": data, "weights": weights(root / "run"), "loop_seconds": final["wall_seconds"], "seconds": seconds}


@contextmanager
def signals_ignored():
    """Stop signals that arrive while no run is listening (a timer firing late) must not stop the tests."""
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def assert_nothing_lost(out: Path, reference: dict) -> None:
    """The run finished, every step is logged once, and the weights are the uninterrupted run's."""
    got = weights(out)
    for name, tensor in reference["weights"].items():
        assert torch.equal(got[name], tensor), f"{out.name}: {name} differs from the uninterrupted run"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "log"] == list(range(1, STEPS + 1))
    assert [r["step"] for r in records if r["event"] != "log"] == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    assert not list(out.glob(".*.tmp")), "temporary files were left behind"
    assert load_run(out).generate("line", max_new_tokens=3, seed=0) is not None


def finish(out: Path, data: Path) -> None:
    """Continue a stopped or killed run the way the user is told to: resume it, or start it again."""
    argv = ["train", "--resume", str(out)] if (out / "checkpoint.pt").exists() else train_args(data, out)
    assert main(argv) == 0


def send_later(signum: int, delay: float) -> subprocess.Popen:
    """Signal this process after `delay` s from another process, as a user or a scheduler would: a timer
    thread of this process may not even run while training keeps both cores busy."""
    return subprocess.Popen(["/bin/sh", "-c", f"sleep {delay:.3f} && kill -{int(signum)} {os.getpid()}"])


def test_stop_signals_at_random_moments_lose_nothing(reference, tmp_path, capsys):
    """SIGINT and SIGTERM at random moments from start-up to the final eval (in this process: fast)."""
    moments = random.Random(SEED)
    with signals_ignored():
        for index in range(SIGNAL_MOMENTS):
            signum = (signal.SIGINT, signal.SIGTERM)[index % 2]
            out = tmp_path / f"run{index}"
            sender = send_later(signum, moments.uniform(0, 1.2 * reference["loop_seconds"]))
            code = main(train_args(reference["data"], out))
            sender.kill()  # if it has not signalled yet, it never will
            sender.wait()
            report = capsys.readouterr().out
            assert code in (0, 128 + signum), report
            if code:
                saved = (out / "checkpoint.pt").exists()
                assert ("--resume" in report) == saved, report
                assert saved or "nothing was trained yet" in report and not out.exists(), report
            finish(out, reference["data"])
            assert_nothing_lost(out, reference)


def run_killed(args: list[str], out: Path, inject: tuple[str, int] | None = None, delay: float | None = None,
               after: str | None = None) -> None:
    """Run pico-llm in a child process and kill -9 it: inside the injected write, or `delay` s after its run
    folder appears (before that there is nothing on disk to lose) or, with `after`, after that file appears."""
    file, at = inject or ("-", 0)
    env = {**os.environ, "PICO_FAULT_THREADS": str(torch.get_num_threads())}
    child = subprocess.Popen([sys.executable, str(RUNNER), file, str(at), *args], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    anchor, appeared = (out / after if after else out), None
    while child.poll() is None:  # watch for the event (a file appearing) without disturbing the child
        appeared = appeared or (time.perf_counter() if anchor.exists() else None)
        if appeared and delay is not None and time.perf_counter() - appeared >= delay:
            child.kill()
        time.sleep(0.005)
    _, stderr = child.communicate(timeout=300)
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("kills", INJECTED, ids=lambda kills: "+".join(f"{f}#{n}" for f, n in kills))
def test_kill_inside_a_write_loses_nothing(kills, reference, tmp_path):
    out = tmp_path / "run"
    for index, inject in enumerate(kills):
        args = ["train", "--resume", str(out)] if index else train_args(reference["data"], out)
        run_killed(args, out, inject)
        assert not (out / "summary.json").exists(), f"the kill at {inject} did not happen"
    finish(out, reference["data"])
    assert_nothing_lost(out, reference)


def test_kill_at_random_moments_loses_nothing(reference, tmp_path):
    """kill -9 while it trains: within 1.5x its training loop's time after its first logged step (the loop,
    the final eval, sometimes the plot). With PICO_FAULT_KILLS set (the long probe) within this process's
    time for the whole run after its run folder appears (its first run here: cold, as a child is)."""
    moments = random.Random(SEED + 1)
    long_probe = "PICO_FAULT_KILLS" in os.environ
    window = reference["seconds"] if long_probe else 1.5 * reference["loop_seconds"]
    unfinished = 0
    for index in range(RANDOM_KILLS):
        out = tmp_path / f"run{index}"
        run_killed(train_args(reference["data"], out), out, delay=moments.uniform(0, window),
                   after=None if long_probe else "metrics.jsonl")
        unfinished += not (out / "summary.json").exists()
        finish(out, reference["data"])
        assert_nothing_lost(out, reference)
    print(f"\n{RANDOM_KILLS} kill -9 at random moments, {unfinished} of them before the run finished: "
          "every run resumed to the uninterrupted run's weights, bit for bit")
