"""The command line: the seed's command, generate/eval, and one-line errors for every bad input."""

import json
import subprocess
import sys

import pytest

from pico_llm.cli import main

from .conftest import REPO

TINY = ["--context", "32", "--batch-size", "8", "--eval-every", "5", "--sample-tokens", "10", "--dtype", "float32"]


def run(*args, timeout=240):
    return subprocess.run([*args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("model", ["kgram_cnn", "kgram_mlp"])
def test_seed_command_runs(model, tmp_path):
    result = run(sys.executable, "pico-llm.py", "--model", model, "--epochs", "20", "--lr", "3e-4", "--context", "128",
                 "--max-steps", "4", "--eval-every", "2", "--sample-tokens", "10", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "run folder:" in result.stdout and "sample:" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["model"] == model


def test_console_script_and_module_entry_points(text_file, tmp_path):
    script = REPO / ".venv" / "bin" / "pico-llm"
    launchers = [[sys.executable, "-m", "pico_llm"]] + ([[str(script)]] if script.exists() else [])
    for i, launcher in enumerate(launchers):
        result = run(*launcher, "train", "--data", str(text_file), "--max-steps", "2", *TINY, "--out", str(tmp_path / str(i)))
        assert result.returncode == 0, result.stderr
    assert run(*launchers[0], "models").stdout.count("params") >= 2


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "r"
    data = folder.parent / "data.txt"
    data.write_text("a small text about boats and the sea.\n" * 60)
    assert main(["train", "--data", str(data), "--max-steps", "10", "--out", str(folder), *TINY, "--width", "16", "--n-layers", "2"]) == 0
    return folder, data


def test_generate_and_eval(trained_run, capsys):
    folder, data = trained_run
    capsys.readouterr()
    assert main(["generate", str(folder), "--prompt", "boats", "--max-new-tokens", "12", "--seed", "3", "--top-k", "5", "--top-p", "0.9"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", str(folder), "--prompt", "boats", "--max-new-tokens", "12", "--seed", "3", "--top-k", "5", "--top-p", "0.9"]) == 0
    assert capsys.readouterr().out == first and first.startswith("boats")
    assert main(["eval", str(folder), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"loss", "perplexity", "bits_per_byte", "accuracy", "tokens"}


def bad_inputs(tmp_path, trained):
    folder, data = trained
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00 not text" * 50)
    bad_config = tmp_path / "config.json"
    bad_config.write_text(json.dumps({"train": {"learning_rate": 1}}))
    not_run = tmp_path / "nothing"
    not_run.mkdir()
    return {
        "missing file": (["train", "--data", str(tmp_path / "nope.txt")], "does not exist"),
        "empty file": (["train", "--data", str(empty)], "is empty"),
        "non-utf8 for char": (["train", "--data", str(binary), "--tokenizer", "char"], "not valid UTF-8"),
        "unknown model": (["train", "--data", str(data), "--model", "gpt9"], "unknown model"),
        "unknown tokenizer": (["train", "--data", str(data), "--tokenizer", "wordpiece"], "unknown tokenizer"),
        "zero context": (["train", "--data", str(data), "--context", "0"], "--context must be positive"),
        "context too long": (["train", "--data", str(data), "--context", "5000"], "too long for this data"),
        "negative lr": (["train", "--data", str(data), "--lr", "-1"], "--lr must be a positive"),
        "unknown config key": (["train", "--data", str(data), "--config", str(bad_config)], "unknown key(s) learning_rate"),
        "unknown model field": (["train", "--data", str(data), "--n-heads", "4"], "unknown flag --n-heads"),
        "resume not a run": (["train", "--resume", str(not_run)], "not a run folder"),
        "resume other model": (["train", "--resume", str(folder), "--model", "kgram_mlp"], "differs from the run"),
        "resume other tokenizer": (["train", "--resume", str(folder), "--tokenizer", "char"], "differs from the run"),
        "generate not a run": (["generate", str(not_run)], "not a run folder"),
        "bad temperature": (["generate", str(folder), "--temperature", "-1"], "--temperature"),
        "eval missing data": (["eval", str(folder), "--data", str(tmp_path / "nope.txt")], "does not exist"),
    }


CASES = ["missing file", "empty file", "non-utf8 for char", "unknown model", "unknown tokenizer", "zero context",
         "context too long", "negative lr", "unknown config key", "unknown model field", "resume not a run",
         "resume other model", "resume other tokenizer", "generate not a run", "bad temperature", "eval missing data"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_error(case, tmp_path, trained_run, capsys):
    argv, message = bad_inputs(tmp_path, trained_run)[case]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    result = run(sys.executable, "pico-llm.py", "--data", str(tmp_path / "missing.txt"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_custom_loop_example_runs():
    result = run(sys.executable, "examples/custom_loop.py", "data/sample_text.txt", "60")
    assert result.returncode == 0, result.stderr
    assert "val bits per byte" in result.stdout


def test_plugin_encoder_from_the_readme_trains_and_generates(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--plugins", "examples/my_encoder.py", "--model", "running_mean", "--hidden", "32",
            "--data", str(text_file), "--max-steps", "6", *TINY, "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", "line", "--max-new-tokens", "5", "--seed", "0"]) == 0
    assert capsys.readouterr().out.strip().startswith("line")


def test_readme_shows_the_exact_plugin_example():
    example = (REPO / "examples" / "my_encoder.py").read_text()
    code = example[example.index("from dataclasses import dataclass") :]
    assert code.strip() in (REPO / "README.md").read_text()
