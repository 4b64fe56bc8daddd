"""The command line: the seed's command, generate/eval, and one-line errors for every bad input."""

import errno
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pico_llm import files
from pico_llm.cli import main
from pico_llm.training.checkpoint import load_checkpoint

from .conftest import REPO

TINY = ["--context", "32", "--batch-size", "8", "--eval-every", "5", "--sample-tokens", "10", "--dtype", "float32"]


def run(*args, timeout=240):
    return subprocess.run([*args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


SEED_COMMAND = ["--epochs", "20", "--lr", "3e-4", "--context", "128", "--max-steps", "4", "--eval-every", "2",
                "--sample-tokens", "10"]


def test_seed_command_runs(tmp_path):
    result = run(sys.executable, "pico-llm.py", "--model", "kgram_cnn", *SEED_COMMAND, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "run folder:" in result.stdout and "sample:" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["model"] == "kgram_cnn"


def test_seed_command_trains_the_kgram_mlp_too(tmp_path):
    assert main(["--model", "kgram_mlp", *SEED_COMMAND, "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["model"] == "kgram_mlp"


def test_console_script_and_module_entry_points():
    script = REPO / ".venv" / "bin" / "pico-llm"
    launchers = [[sys.executable, "-m", "pico_llm"]] + ([[str(script)]] if script.exists() else [])
    for launcher in launchers:  # --help answers without importing torch: fast
        result = run(*launcher, "--help")
        assert result.returncode == 0 and result.stdout.startswith("usage: pico-llm {train,generate,eval,export,serve,"), result.stderr


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
    """Each bad input: its command line and the one line it must print (after "error: ")."""
    folder, data = trained
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00 not text" * 50)
    configs = {name: tmp_path / f"{name}.json" for name in ("unknown_key", "lr_string", "lr_nan")}
    configs["unknown_key"].write_text(json.dumps({"train": {"learning_rate": 1}}))
    configs["lr_string"].write_text(json.dumps({"train": {"lr": "fast"}}))
    configs["lr_nan"].write_text('{"models": {"kgram_cnn": {"train": {"lr": NaN}}}}')
    not_run = tmp_path / "nothing"
    not_run.mkdir()
    runs = {}
    for name, content in {"malformed": '{"train": {', "empty": "", "list": "[1, 2]"}.items():
        runs[name] = tmp_path / f"run_{name}"
        shutil.copytree(folder, runs[name])
        (runs[name] / "config.json").write_text(content)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    train = ["train", "--data", str(data)]
    return {
        "missing file": (["train", "--data", str(tmp_path / "nope.txt")], "does not exist"),
        "empty file": (["train", "--data", str(empty)], "is empty"),
        "non-utf8 for char": (["train", "--data", str(binary), "--tokenizer", "char"], "not valid UTF-8"),
        "unknown model": (train + ["--model", "gpt9"], "unknown model 'gpt9'"),
        "unknown tokenizer": (train + ["--tokenizer", "wordpiece"], "--tokenizer must be one of byte, char, bpe, got 'wordpiece'"),
        "zero context": (train + ["--context", "0"], "--context must be ≥ 1"),
        "context too long": (train + ["--context", "5000"], "too long for this data"),
        "negative lr": (train + ["--lr", "-1"], "--lr must be > 0.0"),
        "lr nan": (train + ["--lr", "nan"], "--lr must be a finite number, got nan"),
        "lr inf": (train + ["--lr", "inf"], "--lr must be a finite number, got inf"),
        "weight decay nan": (train + ["--weight-decay", "nan"], "--weight-decay must be a finite number, got nan"),
        "weight decay inf": (train + ["--weight-decay", "inf"], "--weight-decay must be a finite number, got inf"),
        "epochs nan": (train + ["--epochs", "nan"], "--epochs must be a finite number, got nan"),
        "epochs inf": (train + ["--epochs", "inf"], "--epochs must be a finite number, got inf"),
        "seed 2**70": (train + ["--seed", str(2**70)], f"--seed must be ≥ 0 and ≤ {2**63 - 1}"),
        "dropout 2": (train + ["--dropout", "2"], "--dropout must be ≥ 0.0 and < 1.0, got 2.0"),
        "dropout nan": (train + ["--dropout", "nan"], "--dropout must be a finite number, got nan"),
        "batch size 10**12": (train + ["--batch-size", str(10**12)], "--batch-size must be ≥ 1 and ≤ 1048576"),
        "grad clip nan": (train + ["--grad-clip", "nan"], "--grad-clip must be a finite number, got nan"),
        "sample tokens 10**9": (train + ["--sample-tokens", str(10**9)], "--sample-tokens must be ≥ 0 and ≤ 10000"),
        "int flag not a number": (train + ["--max-steps", "1e3"], "argument --max-steps: invalid int value: '1e3'"),
        "unknown config key": (train + ["--config", str(configs["unknown_key"])], "unknown key(s) learning_rate"),
        "config lr a string": (train + ["--config", str(configs["lr_string"])], "'train': --lr must be a number, got 'fast'"),
        "config lr NaN": (train + ["--config", str(configs["lr_nan"])], "'models.kgram_cnn.train': --lr must be a finite number"),
        "unknown model field": (train + ["--n-heads", "4"], "unknown flag --n-heads"),
        "out is a file": (train + ["--out", str(a_file)], "is a file, not a folder"),
        "out holds a run": (train + ["--out", str(folder)], "already holds a run; continue it with --resume"),
        "resume not a run": (["train", "--resume", str(not_run)], "not a run folder"),
        "resume other model": (["train", "--resume", str(folder), "--model", "kgram_mlp"], "differs from the run"),
        "resume other tokenizer": (["train", "--resume", str(folder), "--tokenizer", "char"], "differs from the run"),
        "resume malformed config": (["train", "--resume", str(runs["malformed"])], "config.json is damaged"),
        "generate empty config": (["generate", str(runs["empty"])], "config.json is damaged"),
        "eval config a list": (["eval", str(runs["list"]), "--data", str(data)], "is not a pico-llm config"),
        "generate not a run": (["generate", str(not_run)], "not a run folder"),
        "bad temperature": (["generate", str(folder), "--temperature", "-1"], "--temperature must be ≥ 0.0"),
        "temperature nan": (["generate", str(folder), "--temperature", "nan"], "--temperature must be a finite number"),
        "repetition penalty nan": (["generate", str(folder), "--repetition-penalty", "nan"],
                                   "--repetition-penalty must be a finite number"),
        "prompt not utf-8": (["generate", str(folder), "--prompt", b"caf\xe9".decode("utf-8", "surrogateescape")],
                             "the prompt is not valid UTF-8"),
        "eval batch size 0": (["eval", str(folder), "--data", str(data), "--batch-size", "0"], "--batch-size must be positive"),
        "eval batch size -1": (["eval", str(folder), "--data", str(data), "--batch-size", "-1"], "--batch-size must be positive"),
        "eval missing data": (["eval", str(folder), "--data", str(tmp_path / "nope.txt")], "does not exist"),
    }


CASES = ["missing file", "empty file", "non-utf8 for char", "unknown model", "unknown tokenizer", "zero context",
         "context too long", "negative lr", "lr nan", "lr inf", "weight decay nan", "weight decay inf", "epochs nan",
         "epochs inf", "seed 2**70", "dropout 2", "dropout nan", "batch size 10**12", "grad clip nan",
         "sample tokens 10**9", "int flag not a number", "unknown config key", "config lr a string", "config lr NaN",
         "unknown model field", "out is a file", "out holds a run", "resume not a run", "resume other model",
         "resume other tokenizer", "resume malformed config", "generate empty config", "eval config a list",
         "generate not a run", "bad temperature", "temperature nan", "repetition penalty nan", "prompt not utf-8",
         "eval batch size 0", "eval batch size -1", "eval missing data"]
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


def test_custom_loop_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["custom_loop.py", "data/sample_text.txt", "60"])
    runpy.run_path("examples/custom_loop.py", run_name="__main__")
    assert "val bits per byte" in capsys.readouterr().out


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


def test_a_utf16_file_trains_with_one_warning(tmp_path, capsys):
    data = tmp_path / "utf16.txt"
    data.write_text("hello world, some text in UTF-16.\n" * 200, encoding="utf-16")
    assert main(["train", "--data", str(data), "--max-steps", "2", *TINY, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "is mostly not UTF-8 text" in err, err


def test_a_char_corpus_without_newlines_samples_from_its_own_text(tmp_path, capsys):
    data = tmp_path / "no_newline.txt"
    data.write_text("abcabcabdabcabd" * 80)
    assert main(["train", "--data", str(data), "--tokenizer", "char", "--max-steps", "4", *TINY,
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "--sample-prompt '\\n' is not in this tokenizer's vocabulary; samples start from 'a'" in err, err
    assert (tmp_path / "run" / "samples.txt").read_text().count("=== step") == 1


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    data = tmp_path / "data.txt"
    data.write_text("a small text about boats and the sea.\n" * 60)
    assert main(["train", "--data", str(data), "--max-steps", "5", *TINY, "--out", str(out)]) == 0

    fsync = os.fsync

    def disk_full_for_checkpoints(fd):
        if "checkpoint.pt" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(files.os, "fsync", disk_full_for_checkpoints)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--max-steps", "10"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write {out / 'checkpoint.pt'}: the disk is full; free some space and run again " \
                  "(no file was left half-written)\n"
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
    assert not list(out.glob(".*.tmp"))


def test_a_full_disk_while_tokenizing_is_one_line(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data.txt"
    data.write_text("some fresh text that is not in the token cache yet.\n" * 40)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    assert main(["train", "--data", str(data), "--max-steps", "2", *TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and "the disk is full" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_out_on_a_read_only_filesystem_is_one_line(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data.txt"
    data.write_text("a small text about boats and the sea.\n" * 60)

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["train", "--data", str(data), "--max-steps", "2", *TINY, "--out", str(tmp_path / "ro" / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot create the run folder {tmp_path / 'ro' / 'run'} (Read-only file system); choose another --out\n"


def test_compare_prints_the_runs_table_and_draws_the_curves(trained_run, tmp_path, capsys):
    folder, data = trained_run
    other = tmp_path / "other"
    assert main(["train", "--data", str(data), "--max-steps", "10", "--out", str(other), *TINY, "--width", "24",
                 "--n-layers", "2"]) == 0
    capsys.readouterr()
    assert main(["compare", str(folder), str(other), "--out", str(tmp_path / "curves.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| id | model | params |")
    rows = [line.split("|") for line in table[2:4]]
    assert {row[1].strip() for row in rows} == {"r", "other"}
    scores = [float(row[9]) for row in rows]
    assert scores == sorted(scores)  # best val bits/byte first
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_tensorboard_logs_the_scalars(text_file, tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    logs = tmp_path / "tb"
    assert main(["train", "--data", str(text_file), *TINY, "--max-steps", "4", "--eval-every", "2", "--log-every", "1",
                 "--width", "16", "--n-layers", "2", "--tensorboard", str(logs), "--out", str(tmp_path / "run")]) == 0
    events = event_accumulator.EventAccumulator(str(logs))
    events.Reload()
    assert [s.step for s in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [s.step for s in events.Scalars("val/bits_per_byte")] == [2, 4]
