"""Scale-out: gradient accumulation, two gloo processes under torchrun matching one process (resume
included, one run folder only), and mixed precision on CUDA where there is a GPU."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

from pico_llm import TrainConfig, Trainer, build_model, load_corpus
from pico_llm.cli import main
from pico_llm.models.registry import model_class
from pico_llm.training.checkpoint import load_checkpoint

from . import ddp_worker


def trained_params(text_file, batch_size: int, grad_accum: int, **overrides) -> dict:
    torch.manual_seed(0)
    model = build_model("kgram_cnn", vocab_size=256, context=32, width=32, n_layers=2)
    config = TrainConfig(data=str(text_file), batch_size=batch_size, grad_accum=grad_accum, max_steps=3,
                         warmup_steps=1, dtype="float32", device="cpu", **overrides)
    trainer = Trainer(model, load_corpus(text_file, "byte"), config)
    for _ in range(3):
        trainer.train_step()
    assert trainer.tokens_seen == 3 * 16 * 32
    return trainer.model.state_dict()


def assert_same_params(got: dict, expected: dict, atol: float = 1e-5) -> None:
    assert got.keys() == expected.keys()  # no `module.` prefix from the DDP wrapper
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=atol, msg=name)


def test_grad_accum_matches_one_big_batch(text_file):
    assert_same_params(trained_params(text_file, 4, 4), trained_params(text_file, 16, 1))


def train_flags(text_file, steps: int) -> list[str]:
    """One tiny run's flags; an empty --config because the runs start in different folders.

    A GELU MLP, not the default ReLU²: with ReLU² the MLP's output weights part beyond 1e-5 after 4 steps,
    most likely because AdamW divides by the gradient's own size, so a weight whose gradient is 0 in one
    process and a rounding error in the other (a unit dead in most rows) moves by 0 in one and by about
    the learning rate in the other.
    """
    no_config = text_file.parent / "empty_config.json"
    no_config.write_text("{}")
    return ["--config", str(no_config), "--data", str(text_file), "--model", "kgram_cnn", "--width", "32",
            "--n-layers", "2", "--activation", "gelu", "--dropout", "0", "--context", "32", "--max-steps", str(steps), "--eval-every", "2",
            "--log-every", "1", "--eval-tokens", "256", "--sample-tokens", "5", "--dtype", "float32", "--device", "cpu",
            "--warmup-steps", "1", "--min-lr-ratio", "1", "--seed", "3"]  # constant lr: 4 steps + 2 resumed = 6 straight


def torchrun(cwd, *args):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "pico_llm", "train", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_encoder_trains_under_ddp_as_in_one_process(text_file, tmp_path):
    """Two gloo processes of batch 4 end where one process of batch 8 does, for every registered encoder, with
    Muon and AdamW chained (each process orthogonalises the same averaged gradients).

    Newton–Schulz amplifies the last-bit difference of the two summation orders: the debug transformer's
    weights end up to 1.2e-5 apart. Training on one process's half of the batch instead moves them by about
    1e-2 (every encoder), so 1e-4 still tells a wrong average from rounding."""
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(ddp_worker.train_every_model, args=(2, free_port(), str(text_file), str(out), "muon"),
                                nprocs=2)
    distributed = torch.load(out, weights_only=True)
    assert {"kgram_mlp", "kgram_cnn", "transformer", "lstm", "cnn_attention", "cnn_mlp", "mamba", "gla"} <= set(distributed)
    for name, weights in distributed.items():
        assert_same_params(weights, ddp_worker.train_a_few_steps(name, str(text_file), 8, "muon"), atol=1e-4)


def test_two_gloo_processes_match_one_process_and_resume(text_file, tmp_path):
    workdir = tmp_path / "ddp"
    workdir.mkdir()
    first = torchrun(workdir, *train_flags(text_file, 4), "--batch-size", "4", "--grad-accum", "2")
    assert first.stdout.count("run folder:") == 2  # rank 0 reports; rank 1 prints nothing
    assert [p.name for p in workdir.iterdir()] == ["experiments"]
    (run,) = (workdir / "experiments" / "results").iterdir()  # one run folder, written by rank 0 alone

    single = tmp_path / "single"
    assert main(["train", *train_flags(text_file, 4), "--batch-size", "16", "--out", str(single)]) == 0
    assert_same_params(load_checkpoint(run / "checkpoint.pt")["model"], load_checkpoint(single / "checkpoint.pt")["model"])

    torchrun(workdir, "--resume", str(run), "--max-steps", "6")
    assert main(["train", "--resume", str(single), "--max-steps", "6"]) == 0
    assert_same_params(load_checkpoint(run / "checkpoint.pt")["model"], load_checkpoint(single / "checkpoint.pt")["model"])
    assert len(list((workdir / "experiments" / "results").iterdir())) == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "log"] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["tokens_seen"] == 6 * 16 * 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["auto", "float16"])
def test_mixed_precision_on_cuda_has_no_nans(text_file, dtype):
    torch.manual_seed(0)
    model = build_model("transformer", vocab_size=256, context=32, **model_class("transformer").debug)
    config = TrainConfig(data=str(text_file), batch_size=16, grad_accum=2, max_steps=30, warmup_steps=5,
                         eval_every=1000, dtype=dtype, device="cuda")
    trainer = Trainer(model, load_corpus(text_file, "byte"), config)
    summary = trainer.fit()
    assert trainer.dtype in (torch.bfloat16, torch.float16)
    assert trainer.scaler.is_enabled() == (trainer.dtype == torch.float16)
    assert math.isfinite(summary["val_loss"]) and summary["val_loss"] < math.log(256)


@pytest.mark.parametrize("argv, message", [
    (["--grad-accum", "0"], "--grad-accum must be ≥ 1"),
    (["--tokenize-workers", "0"], "--tokenize-workers must be ≥ 1"),
    (["--data", "hf:a:b:c:d"], "bad dataset hf:a:b:c:d"),
])
def test_bad_scale_flags_give_one_line_errors(argv, message, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
