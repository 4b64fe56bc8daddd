"""The trainer: learning, run folder, resume, interrupts, time budget, atomic checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from pico_llm import Callback, TrainConfig, Trainer, build_model, load_corpus, load_run
from pico_llm.errors import PicoError
from pico_llm.training.checkpoint import load_checkpoint, save_checkpoint
from pico_llm.training.launch import resume_training, start_training
from pico_llm.training.run import LOCK_FILE, RunLock

from .conftest import REPO

RUN_FILES = {"config.json", "metrics.jsonl", "checkpoint.pt", "model.safetensors", "tokenizer.json", "curves.png", "samples.txt",
             "summary.json"}


def small_config(data, out, **overrides) -> TrainConfig:
    fields = dict(
        model="kgram_cnn", data=str(data), batch_size=8, max_steps=20, eval_every=10,
        log_every=1, eval_tokens=512, sample_tokens=20, dtype="float32", device="cpu", out=str(out), warmup_steps=5,
    )
    return TrainConfig(**{**fields, **overrides})


SMALL_CNN = {"width": 32, "n_layers": 3, "context": 32}


def test_loss_falls_to_near_zero_on_repeating_corpus(repeating_file):
    corpus = load_corpus(repeating_file, "byte")
    torch.manual_seed(0)
    model = build_model("kgram_mlp", vocab_size=256, context=32, k=4, hidden=64, embed_dim=16)
    config = TrainConfig(data=str(repeating_file), batch_size=16, max_steps=150, lr=1e-2,
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


@pytest.mark.parametrize("optimizer, schedule", [("adamw", "cosine"), ("muon", "wsd")])
def test_resume_continues_the_same_curve(text_file, tmp_path, optimizer, schedule):
    options = {"optimizer": optimizer, "schedule": schedule}
    straight, _ = start_training(small_config(text_file, tmp_path / "straight", **options), {**SMALL_CNN, "dropout": 0.1})
    straight.fit()

    first, folder = start_training(small_config(text_file, tmp_path / "resumed", **options), {**SMALL_CNN, "dropout": 0.1},
                                   [StopAt(7)])
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


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_time_budget_stops_then_runs_final_eval(text_file, tmp_path, schedule):
    config = small_config(text_file, tmp_path / "run", max_steps=10**9, time_budget=1.0, eval_every=50, schedule=schedule)
    trainer, _ = start_training(config, SMALL_CNN)
    summary = trainer.fit()
    assert summary["wall_seconds"] >= 1.0 and 0 < summary["steps"] < 10**9  # no upper bound: machines differ
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


def start_child(text_file, out, *extra):
    cmd = [sys.executable, "-m", "pico_llm", "train", "--data", str(text_file), "--context", "32", "--width", "32",
           "--n-layers", "2", "--max-steps", "100000", "--eval-every", "100000", "--log-every", "1", "--out", str(out),
           "--dtype", "float32", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc) -> None:
    """Wait for an event (a file, a line) while the child runs; no fixed sleeps."""
    while not condition():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def test_ctrl_c_during_start_up_leaves_nothing_to_block_a_retry(text_file, tmp_path):
    out = tmp_path / "run"
    proc = start_child(text_file, out)
    wait_for(out.exists, proc)  # the run folder exists: start-up (the optimizer, the dtype) is still under way
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    if (out / "checkpoint.pt").exists():  # a slow signal may land after the first step: then it is resumable
        assert "--resume" in stdout
    else:
        assert "nothing was trained yet" in stdout and not out.exists()


def test_sigterm_while_training_saves_a_checkpoint_and_exits_143(text_file, tmp_path):
    out = tmp_path / "run"
    proc = start_child(text_file, out)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and f"--resume {out}" in stdout
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert step >= 2
    second, _ = resume_training(out, {"max_steps": step + 2, "eval_every": 1000})
    assert second.fit()["steps"] == step + 2


def test_a_second_writer_is_refused_with_the_holders_pid(text_file, tmp_path):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run"), SMALL_CNN)
    with pytest.raises(PicoError, match=f"in use by another training \\(PID {os.getpid()}\\)"):
        start_training(small_config(text_file, tmp_path / "run"), SMALL_CNN, overwrite=True)
    with pytest.raises(PicoError, match="in use by another training"):
        resume_training(folder.path, {})
    trainer.fit()  # the lock goes with the run: afterwards the folder is free
    resume_training(folder.path, {})[0].fit()


@pytest.mark.skipif(sys.platform == "win32", reason="run folders are locked with fcntl")
def test_processes_probing_a_run_at_once_do_not_refuse_each_other(tmp_path):
    import fcntl

    (tmp_path / LOCK_FILE).write_text("12345")
    with open(tmp_path / LOCK_FILE) as other_probe:  # another torchrun rank probing the same run right now
        fcntl.flock(other_probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        RunLock.check_free(tmp_path)
    training = RunLock(tmp_path)
    training.acquire()
    with pytest.raises(PicoError, match=f"in use by another training \\(PID {os.getpid()}\\)"):
        RunLock.check_free(tmp_path)
    training.release()
    RunLock.check_free(tmp_path)


def test_a_finished_run_is_not_overwritten_without_asking(text_file, tmp_path):
    config = small_config(text_file, tmp_path / "run", max_steps=4, eval_every=2)
    start_training(config, SMALL_CNN)[0].fit()
    with pytest.raises(PicoError, match="already holds a run; continue it with `resume`"):
        start_training(config, SMALL_CNN)
    trainer, folder = start_training(replace(config, max_steps=2), SMALL_CNN, overwrite=True)
    assert trainer.fit()["steps"] == 2
    assert [r["step"] for r in folder.records() if r["event"] == "log"] == [1, 2]


def test_resume_refuses_a_checkpoint_of_another_model(text_file, tmp_path):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run", max_steps=2), SMALL_CNN)
    trainer.fit()
    other, _ = start_training(small_config(text_file, tmp_path / "other", max_steps=2, model="kgram_mlp"),
                              {"context": 32, "k": 3, "hidden": 16})
    other.fit()
    (tmp_path / "other" / "checkpoint.pt").replace(folder.path / "checkpoint.pt")
    with pytest.raises(PicoError, match="holds a kgram_mlp model that differs from the run's config.json"):
        resume_training(folder.path, {"max_steps": 4})


def test_resume_refuses_changed_data_unless_allowed(text_file, tmp_path):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run", max_steps=2), SMALL_CNN)
    trainer.fit()
    text_file.write_text(text_file.read_text() + "one more line\n")
    with pytest.raises(PicoError, match="changed since this run trained on it"):
        resume_training(folder.path, {"max_steps": 4})
    assert resume_training(folder.path, {"max_steps": 4}, allow_data_change=True)[0].fit()["steps"] == 4


def test_resume_reuses_the_recorded_dtype(text_file, tmp_path):
    config = small_config(text_file, tmp_path / "run", max_steps=2, dtype="auto")
    trainer, folder = start_training(config, SMALL_CNN)
    trainer.fit()
    recorded = json.loads((folder.path / "config.json").read_text())["runtime"]
    assert recorded["dtype"] == trainer.runtime.dtype_name and recorded["device"] == "cpu"
    assert load_checkpoint(folder.path / "checkpoint.pt")["runtime"] == recorded
    resumed, _ = resume_training(folder.path, {"max_steps": 3})
    assert resumed.runtime.dtype == trainer.runtime.dtype
    resumed.fit()
    assert resume_training(folder.path, {"max_steps": 4, "dtype": "float32"})[0].runtime.dtype == torch.float32


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(text_file, tmp_path):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run", max_steps=8, eval_every=3), SMALL_CNN)
    good = {}
    save = trainer.save

    def save_then_diverge(filename, **kwargs):
        save(filename, **kwargs)
        if filename == "checkpoint.pt":  # the weights go bad right after step 3's checkpoint
            good.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
            with torch.no_grad():
                trainer.model.features.input.embed.weight.fill_(float("inf"))

    trainer.save = save_then_diverge
    with pytest.raises(PicoError, match="the training loss became nan at step 4, so the run stopped and its checkpoint of step 3 is kept"):
        trainer.fit()
    state = load_checkpoint(folder.path / "checkpoint.pt")
    assert state["step"] == 3
    assert all(torch.equal(state["model"][k], v) for k, v in good.items())


def test_damaged_best_weights_fall_back_to_checkpoint_pt(text_file, tmp_path, recwarn):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run", max_steps=2), SMALL_CNN)
    trainer.fit()
    (folder.path / "model.safetensors").write_bytes(b"torn")
    run = load_run(folder.path)
    assert any("using checkpoint.pt instead" in str(w.message) for w in recwarn)
    assert isinstance(run.generate("line", max_new_tokens=3, seed=0), str)


def test_resume_after_a_kill_logs_no_step_twice(text_file, tmp_path):
    trainer, folder = start_training(small_config(text_file, tmp_path / "run", max_steps=6, eval_every=3), SMALL_CNN)
    trainer.fit()
    checkpoint = load_checkpoint(folder.path / "checkpoint.pt")
    with open(folder.path / "metrics.jsonl", "a") as handle:  # what a kill after step 3's checkpoint leaves
        handle.write('{"event": "log", "step": 4, "train_lo')
    from pico_llm.training.checkpoint import save_checkpoint

    checkpoint.update(step=3)
    save_checkpoint(checkpoint, folder.path / "checkpoint.pt")
    resume_training(folder.path, {})[0].fit()
    steps = [r["step"] for r in folder.records() if r["event"] == "log"]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (folder.path / "samples.txt").read_text().count("=== step 6") == 1
