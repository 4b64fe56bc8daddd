"""The trainer: learning, run folder, resume, interrupts, time budget, atomic checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pico_llm import Callback, TrainConfig, Trainer, build_model, load_corpus, load_run
from pico_llm.errors import PicoError
from pico_llm.training.checkpoint import load_checkpoint, save_checkpoint
from pico_llm.training.launch import resume_training, start_training

from .conftest import REPO

RUN_FILES = {"config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "tokenizer.json", "curves.png", "samples.txt", "summary.json"}


def small_config(data, out, **overrides) -> TrainConfig:
    fields = dict(
        model="kgram_cnn", data=str(data), context=32, batch_size=8, max_steps=20, eval_every=10,
        log_every=1, eval_tokens=512, sample_tokens=20, dtype="float32", device="cpu", out=str(out), warmup_steps=5,
    )
    return TrainConfig(**{**fields, **overrides}).validate()


SMALL_CNN = {"width": 32, "n_layers": 3}


def test_loss_falls_to_near_zero_on_repeating_corpus(repeating_file):
    corpus = load_corpus(repeating_file, "byte")
    torch.manual_seed(0)
    model = build_model("kgram_mlp", vocab_size=256, context=32, k=4, hidden=64, embed_dim=16)
    config = TrainConfig(data=str(repeating_file), context=32, batch_size=16, max_steps=150, lr=1e-2,
                         warmup_steps=10, eval_every=1000, dtype="float32", device="cpu")
    summary = Trainer(model, corpus, config).fit()
    assert summary["val_loss"] < 0.05
    assert summary["val_accuracy"] > 0.99


def test_run_folder_has_every_file(text_file, tmp_path):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run"), SMALL_CNN)
    summary = trainer.fit()
    assert RUN_FILES <= {p.name for p in folder.path.iterdir()}
    for key in ("val_loss", "val_perplexity", "val_bits_per_byte", "val_accuracy", "best_val_loss",
                "params", "tokens_seen", "wall_seconds", "train_tokens_per_second"):
        assert key in summary
    records = [json.loads(line) for line in (folder.path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["event"] in ("eval", "final")]
    assert [r["step"] for r in evals] == [10, 20]
    for key in ("step", "epoch", "wall_seconds", "tokens_seen", "train_loss", "val_loss", "val_perplexity",
                "val_bits_per_byte", "val_accuracy", "lr", "tokens_per_second"):
        assert key in evals[0]
    assert (folder.path / "samples.txt").read_text().count("=== step") == 2
    run = load_run(folder.path)
    assert isinstance(run.generate("line", max_new_tokens=5, seed=0), str)


class StopAt(Callback):
    def __init__(self, step: int):
        self.stop_step = step

    def on_log(self, trainer, record):
        if trainer.step == self.stop_step:
            trainer.request_stop()


def train_losses(path):
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["train_loss"] for r in map(json.loads, lines) if r["event"] == "log"}


def test_resume_continues_the_same_curve(text_file, tmp_path):
    straight, _ = start_training(small_config(text_file, tmp_path / "straight"), {**SMALL_CNN, "dropout": 0.1})
    straight.fit()

    first, folder = start_training(small_config(text_file, tmp_path / "resumed"), {**SMALL_CNN, "dropout": 0.1}, [StopAt(7)])
    first.fit()
    assert first.interrupted and first.step == 7
    second, _ = resume_training(folder.path, {})
    second.fit()
    expected, got = train_losses(tmp_path / "straight"), train_losses(folder.path)
    assert got.keys() == expected.keys() == set(range(1, 21))
    assert got == expected


def test_resume_can_extend_a_finished_run(text_file, tmp_path):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run"), SMALL_CNN)
    trainer.fit()
    longer, _ = resume_training(folder.path, {"max_steps": 30})
    summary = longer.fit()
    assert summary["steps"] == 30


def test_time_budget_stops_then_runs_final_eval(text_file, tmp_path):
    config = small_config(text_file, tmp_path / "run", max_steps=10**9, time_budget=2.0, eval_every=50)
    trainer, _ = start_training(config, SMALL_CNN)
    started = time.perf_counter()
    summary = trainer.fit()
    assert 2.0 <= summary["wall_seconds"] < 4.0
    assert time.perf_counter() - started < 15
    assert trainer.learning_rate() == pytest.approx(config.lr * config.min_lr_ratio, rel=1e-3)


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)
    with pytest.raises(Exception):
        save_checkpoint({"step": 2, "bad": lambda: None}, path)  # fails half-way through pickling
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_cannot_run_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "x": Payload()}, path)
    with pytest.raises(PicoError, match="cannot load"):
        load_checkpoint(path)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(text_file, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pico_llm", "train", "--data", str(text_file), "--context", "32", "--width", "32",
           "--n-layers", "2", "--max-steps", "100000", "--eval-every", "100000", "--out", str(out), "--dtype", "float32"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "config.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stdout
    assert load_checkpoint(out / "checkpoint.pt")["step"] > 0
