"""`pico-llm bench --suite quick|standard`: a fair architecture shoot-out.

Every encoder gets the same data, tokenizer (bytes), seed, wall-clock budget and a parameter budget
(each model's width is chosen to land within ±10% of it). Models run one after another, each in its
own process so that its peak memory is its own. Reported per model: val bits per byte against wall
time, final val bits per byte and accuracy, parameters, train and generation tokens/s, peak RSS,
FLOPs per token, MFU against a matmul peak measured here, and long-range probe accuracy by distance.
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import read_config_file, resolve
from ..files import write_json, write_text
from ..models.registry import build_model
from ..training.launch import start_training
from ..training.trainer import Callback
from .generation import bench_generate
from .isolated import run_isolated
from .probes import VOCAB, probe_accuracy, train_on_probes
from .sizing import match_params
from .training import matmul_peak_flops


@dataclass(frozen=True)
class Suite:
    time_budget: float
    probe_seconds: float
    generate_tokens: int
    params: int = 1_000_000
    context: int = 128
    batch_size: int = 32
    seed: int = 1337


SUITES = {
    "quick": Suite(time_budget=30, probe_seconds=10, generate_tokens=200),  # 8 models: 418 s on an AVX-512 EPYC (spawned), 423-438 s on a Zen 3
    "standard": Suite(time_budget=300, probe_seconds=120, generate_tokens=500),
}


class EvalRecorder(Callback):
    def __init__(self):
        self.records: list[dict] = []

    def on_eval(self, trainer, record: dict) -> None:
        self.records.append(record)


def bench_one(name: str, data: str, suite: Suite, out: str) -> dict:
    """Train, time and probe one encoder (runs in a child process)."""
    flags = {"model": name, "data": data, "tokenizer": "byte", "batch_size": suite.batch_size,
             "time_budget": suite.time_budget, "seed": suite.seed, "out": str(Path(out, "runs", name)),
             "eval_every": 100, "eval_tokens": 16384, "max_steps": None, "epochs": None}
    config, fields = resolve(read_config_file(None), flags, {"context": suite.context})
    fields = match_params(name, suite.params, **fields, vocab_size=256)
    fields = {k: v for k, v in fields.items() if k != "vocab_size"}
    recorder = EvalRecorder()
    trainer, _ = start_training(config, fields, [recorder])
    summary = trainer.fit()
    generation = bench_generate(trainer.model, 1, suite.generate_tokens)
    torch.manual_seed(suite.seed)
    probe_model = build_model(name, **{**fields, "vocab_size": VOCAB})
    probe_steps = train_on_probes(probe_model, suite.probe_seconds, suite.context)
    return {
        "model": name,
        "fields": fields,
        "params": summary["params"],
        "val_bits_per_byte": summary["val_bits_per_byte"],
        "val_accuracy": summary["val_accuracy"],
        "val_loss": summary["val_loss"],
        "steps": summary["steps"],
        "train_tokens_per_second": summary["train_tokens_per_second"],
        "generate_tokens_per_second": generation["tokens_per_second"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "flops_per_token": trainer.model.flops_per_token(),
        "dtype": summary["dtype"],
        "curve": [{"wall_seconds": r["wall_seconds"], "val_bits_per_byte": r["val_bits_per_byte"]} for r in recorder.records],
        "probe_steps": probe_steps,
        "probes": probe_accuracy(probe_model, suite.context),
    }


def run_suite(suite: Suite, data: str, models: list[str], out: str | Path) -> list[dict]:
    """Run every model in turn (never concurrently) and write results.json, results.md and plots."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    peaks: dict[str, float] = {}  # measured for the dtypes the models train in (bfloat16 only where it is native)
    results = []
    for name in models:
        print(f"[bench] {name}: training for {suite.time_budget:.0f}s at ~{suite.params:,} parameters", flush=True)
        result = run_isolated(bench_one, name, data, suite, str(out))
        achieved = result["flops_per_token"] * result["train_tokens_per_second"]
        if result["dtype"] not in peaks:
            peaks[result["dtype"]] = matmul_peak_flops(getattr(torch, result["dtype"]))
        result["mfu"] = round(achieved / peaks[result["dtype"]], 4)
        results.append(result)
        print(f"[bench] {name}: {result['val_bits_per_byte']:.4f} bits/byte, {result['train_tokens_per_second']:.0f} tok/s", flush=True)
    results.sort(key=lambda r: r["val_bits_per_byte"])
    report = {"suite": asdict(suite), "data": data, "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
              "threads": torch.get_num_threads(), "results": results}
    write_json(out / "results.json", report)
    write_text(out / "results.md", markdown_table(report))
    plot_suite(results, out)
    return results


def markdown_table(report: dict) -> str:
    rows = [
        "| model | params | val bits/byte | val acc | train tok/s | gen tok/s | peak RSS MB | MFLOP/token | MFU | recall acc by distance | copy acc by length |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        recall = " ".join(f"{k}:{v:.2f}" for k, v in r["probes"]["recall"].items() if v is not None)
        copy = " ".join(f"{k}:{v:.2f}" for k, v in r["probes"]["copy"].items() if v is not None)
        rows.append(
            f"| {r['model']} | {r['params']:,} | {r['val_bits_per_byte']:.4f} | {r['val_accuracy']:.3f} | "
            f"{r['train_tokens_per_second']:,.0f} | {r['generate_tokens_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} | "
            f"{r['flops_per_token'] / 1e6:.1f} | {r['mfu']:.1%} | {recall} | {copy} |"
        )
    suite = report["suite"]
    header = (f"Suite: {suite['time_budget']:.0f} s per model at ~{suite['params']:,} parameters, context {suite['context']}, "
              f"batch {suite['batch_size']}, bytes, seed {suite['seed']}; data {report['data']}; "
              f"matmul peak {report['matmul_peak_gflops']} GFLOP/s; {report['threads']} threads.\n\n")
    return header + "\n".join(rows) + "\n"


def plot_suite(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for r in results:
        ax.plot([p["wall_seconds"] for p in r["curve"]], [p["val_bits_per_byte"] for p in r["curve"]], "o-", label=r["model"])
    ax.set(xlabel="wall time (s)", ylabel="val bits per byte", title="val bits per byte against wall time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(out / "bits_per_byte.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    names = [r["model"] for r in results]
    for ax, key, title in zip(axes, ("train_tokens_per_second", "generate_tokens_per_second"), ("training", "generation")):
        ax.bar(names, [r[key] for r in results], color="tab:blue")
        ax.set(title=f"{title} tokens/s", ylabel="tokens/s")
        ax.tick_params(axis="x", rotation=30)
    fig.savefig(out / "throughput.png", dpi=90)
    plt.close(fig)
