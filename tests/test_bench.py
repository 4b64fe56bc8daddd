"""Benchmarks: single-model timers, matched sizing, long-range probes and a tiny suite run."""

import json
import os

import pytest
import torch
from torch import nn

from pico_llm.bench.ablation import Arm, run_ablation, select_arms, verdicts
from pico_llm.bench.probes import (
    IGNORE,
    SEPARATOR,
    VOCAB,
    associative_recall,
    copying,
    probe_accuracy,
)
from pico_llm.bench.generation import weight_bytes
from pico_llm.bench.isolated import run_isolated
from pico_llm.bench.sizing import count_params, match_params
from pico_llm.bench.suite import Suite, run_suite
from pico_llm.cli import main
from pico_llm.models import BaseConfig, build_model, model_names

from .conftest import REPO


def test_each_isolated_job_has_a_process_of_its_own_and_raises_here():
    first, second = run_isolated(os.getpid), run_isolated(os.getpid)
    assert len({os.getpid(), first, second}) == 3
    with pytest.raises(ValueError, match="invalid literal"):
        run_isolated(int, "not a number")


def test_weight_bytes_count_what_a_decoding_step_reads():
    tied = build_model("transformer", vocab_size=100, context=16, n_layer=1, n_embd=32, n_head=2)
    untied = build_model("transformer", vocab_size=100, context=16, n_layer=1, n_embd=32, n_head=2, tie_embeddings=False)
    assert weight_bytes(tied) == 4 * tied.num_params() + tied.blocks[0].attn.rotary.rotations.numel() * 4
    assert weight_bytes(untied) == weight_bytes(tied)  # the untied head is read, its separate embedding is a row


@pytest.mark.parametrize("name", model_names())
def test_matched_sizes_land_within_ten_percent(name):
    fields = match_params(name, 1_000_000, vocab_size=256, context=128)
    assert abs(count_params(name, **fields) - 1_000_000) <= 100_000


def test_bench_generate_and_train_print_json(capsys):
    assert main(["bench", "generate", "--model", "kgram_cnn", "--width", "16", "--n-layers", "2",
                 "--prompt-tokens", "4", "--new-tokens", "20", "--context", "32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens_per_second"] > 0 and result["params"] > 0 and result["ms_per_token"] > 0
    assert result["read_gb_per_second"] > 0 and result["share_of_bound"] > 0
    assert result["weight_mb"] == pytest.approx(weight_bytes(build_model("kgram_cnn", width=16, n_layers=2, context=32)) / 1e6, abs=0.01)
    assert main(["bench", "train", "--model", "transformer", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
                 "--context", "32", "--batch-size", "4", "--steps", "3", "--dtype", "float32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens_per_second"] > 0 and result["ms_per_step"] > 0 and 0 < result["mfu"] < 1


def test_probe_answers_are_where_the_distance_says():
    generator = torch.Generator().manual_seed(0)
    inputs, targets, distances = associative_recall(4, 64, pairs=4, generator=generator)
    for row, col in (targets != IGNORE).nonzero().tolist():
        value_position = col - distances[row, col].item()
        assert inputs[row, value_position] == targets[row, col]  # the value sits `distance` tokens back
        assert inputs[row, value_position - 1] == inputs[row, col]  # after the same key
    inputs, targets, distances = copying(4, 128, generator)
    for row, col in (targets != IGNORE).nonzero().tolist():
        assert inputs[row, col - distances[row, col].item()] == targets[row, col]
    assert inputs.max() < VOCAB


class ProbeOracle(nn.Module):
    """Solves both probes by their definitions: after a separator at s it copies the token s back; otherwise it
    predicts what followed the last earlier occurrence of the current token (an induction head, i.e. recall)."""

    def __init__(self):
        super().__init__()
        self.config = BaseConfig(vocab_size=VOCAB, context=128)
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, VOCAB)
        for row, sequence in enumerate(tokens.tolist()):
            separator = sequence.index(SEPARATOR) if SEPARATOR in sequence else len(sequence)
            last = {}
            for t, token in enumerate(sequence):
                if t >= separator:
                    logits[row, t, sequence[t - separator]] = 1.0
                elif token in last:
                    logits[row, t, sequence[last[token] + 1]] = 1.0
                last[token] = t
        return logits


def test_probes_score_recall_and_copying_by_distance():
    oracle = probe_accuracy(ProbeOracle(), samples=64)
    assert list(oracle["recall"]) == ["1-8", "9-16", "17-32", "33-64", "65-128"]
    assert list(oracle["copy"]) == ["4", "8", "16", "32", "60"]
    assert all(v == 1.0 for v in oracle["recall"].values() if v is not None)
    assert sum(v is not None for v in oracle["recall"].values()) >= 3
    assert all(v == 1.0 for v in oracle["copy"].values())
    untrained = probe_accuracy(build_model("kgram_mlp", vocab_size=VOCAB, context=128, k=4, hidden=32, embed_dim=8), samples=64)
    assert all(v < 0.2 for v in untrained["recall"].values() if v is not None)


def test_tiny_suite_writes_its_reports(tmp_path):
    suite = Suite(time_budget=0.5, probe_seconds=0.2, generate_tokens=5, params=200_000, context=32, batch_size=8)
    results = run_suite(suite, str(REPO / "data" / "sample_text.txt"), ["kgram_mlp", "kgram_cnn"], tmp_path)
    assert sorted(r["model"] for r in results) == ["kgram_cnn", "kgram_mlp"]
    table = [line.split("|") for line in (tmp_path / "results.md").read_text().splitlines() if line.startswith("| kgram")]
    listed = [(row[1].strip(), float(row[3])) for row in table]  # (model, val bits/byte) in the order shown
    assert {name for name, _ in listed} == {"kgram_cnn", "kgram_mlp"}
    assert [bpb for _, bpb in listed] == sorted(bpb for _, bpb in listed)  # best model first
    for name in ("results.json", "results.md", "bits_per_byte.png", "throughput.png"):
        assert (tmp_path / name).is_file()
    report = json.loads((tmp_path / "results.json").read_text())
    for r in report["results"]:
        assert abs(r["params"] - 200_000) <= 20_000
        assert r["train_tokens_per_second"] > 0 and r["generate_tokens_per_second"] > 0 and r["peak_rss_mb"] > 0
        assert 0 < r["mfu"] < 1 and r["curve"]


def test_an_option_wins_only_by_more_than_the_spread():
    def row(arm, median, spread):
        return {"model": "m", "arm": arm, "median": median, "spread": spread}

    rows = verdicts([row("baseline", 2.50, 0.02), row("clear", 2.40, 0.03), row("within", 2.49, 0.005),
                     row("noisy", 2.45, 0.08), row("worse", 2.60, 0.01)])
    assert [(r["arm"], r["wins"]) for r in rows] == [("baseline", False), ("clear", True), ("within", False),
                                                     ("noisy", False), ("worse", False)]
    assert rows[1]["delta"] == pytest.approx(-0.10)


def test_tiny_ablation_writes_its_reports(tmp_path):
    arms = [Arm("kgram_mlp", "baseline", fields={"hidden": 32}), Arm("kgram_mlp", "muon", {"optimizer": "muon"}, {"hidden": 32})]
    rows = run_ablation(arms, str(REPO / "data" / "sample_text.txt"), budget=0.5, seeds=2, out=tmp_path)
    assert [r["arm"] for r in rows] == ["baseline", "muon"]
    for r in rows:
        assert len(r["runs"]) == 2 and r["spread"] >= 0 and r["tokens_per_second"] > 0
    table = (tmp_path / "results.md").read_text()
    assert "| kgram_mlp | muon |" in table and (tmp_path / "ablation.png").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["seeds"] == 2
    arms = select_arms("transformer:adamw,kgram_cnn,kgram_cnn:dropout=0.1+optimizer=muon+gated=false")
    assert arms[0].label == "transformer:adamw" and arms[1].label == "kgram_cnn:baseline"
    assert arms[-1].train == {"optimizer": "muon"} and arms[-1].fields == {"dropout": 0.1, "gated": False}
