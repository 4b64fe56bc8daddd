"""`pico-llm bench --suite ablation`: every option on and off at a fixed time budget, over several seeds.

An arm is one model with one change from its defaults (its config in experiments/config.json and
its dataclass): an optimizer, a schedule or an architecture field. Each arm trains `seeds` times for
the same wall-clock budget on the same bytes, each run in its own process, one after another. The
report gives, per arm, the median final val bits per byte over the seeds, their spread (max - min),
the difference from the model's baseline and the median train tokens/s. An option *wins* when its
median beats the baseline's by more than the larger of the two spreads: the rule a default must
pass before it changes.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TRAIN_FIELDS, TrainConfig, read_config_file, resolve
from ..errors import PicoError
from ..files import write_json, write_text
from ..models.registry import make_config
from ..training.launch import start_training
from .isolated import run_isolated


@dataclass(frozen=True)
class Arm:
    model: str
    name: str  # "baseline" or what changes
    train: dict = field(default_factory=dict)  # TrainConfig fields
    fields: dict = field(default_factory=dict)  # model config fields

    @property
    def label(self) -> str:
        return f"{self.model}:{self.name}"


def _arms(model: str, options: dict[str, tuple[dict, dict]]) -> list[Arm]:
    return [Arm(model, "baseline")] + [Arm(model, name, train, fields) for name, (train, fields) in options.items()]


WSD = ({"schedule": "wsd"}, {})
ARMS = [
    *_arms("transformer", {
        "adamw": ({"optimizer": "adamw"}, {}), "wsd": WSD,
        "qk_norm": ({}, {"qk_norm": True}),
        "relu2": ({}, {"mlp": "relu2"}),
        "untied": ({}, {"tie_embeddings": False}),
        "zero_init": ({}, {"zero_init": True}),
        "softcap": ({}, {"softcap": 15.0}),
        "value_residual": ({}, {"value_residual": True}),
        "unet": ({}, {"unet": True}),
    }),
    *_arms("kgram_cnn", {
        "muon": ({"optimizer": "muon"}, {}), "wsd": WSD,
        "dropout": ({}, {"dropout": 0.1}),
        "zero_init": ({}, {"zero_init": True}),
        "dropout+zero_init": ({}, {"dropout": 0.1, "zero_init": True}),
        "relu2": ({}, {"gated": False, "activation": "relu2"}),
    }),
]


def parse_arm(label: str) -> Arm:
    """An arm written out: `model:field=value+field=value` (train or model fields; values as in JSON)."""
    model, _, changes = label.partition(":")
    train, fields = {}, {}
    for change in changes.split("+"):
        key, _, text = change.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        (train if key in TRAIN_FIELDS else fields)[key] = value
    TrainConfig(**train)  # refuse a bad arm before any arm trains
    make_config(model, **fields)
    return Arm(model, changes, train, fields)


def select_arms(spec: str | None) -> list[Arm]:
    """All arms, or those in `spec`, comma-separated: labels (transformer:adamw), model names, or arms written
    out (kgram_cnn:dropout=0.1+optimizer=muon)."""
    if not spec:
        return ARMS
    chosen: list[Arm] = []
    known = {arm.label for arm in ARMS} | {arm.model for arm in ARMS}
    for wanted in spec.split(","):
        if "=" in wanted:
            chosen.append(parse_arm(wanted))
        elif wanted in known:
            chosen += [arm for arm in ARMS if wanted in (arm.label, arm.model)]
        else:
            raise PicoError(f"unknown ablation arm {wanted}; choose from {', '.join(sorted(known))}, "
                            "or write one out as model:field=value+field=value")
    return chosen


def train_arm(arm: Arm, data: str, budget: float, seed: int, out: str, dtype: str = "auto") -> dict:
    """One run of one arm (in a child process): the final val bits per byte and the training speed."""
    flags = {"model": arm.model, "data": data, "tokenizer": "byte", "time_budget": budget, "seed": seed, "dtype": dtype,
             "out": out, "max_steps": None, "epochs": None, "eval_every": 10**9, "sample_tokens": 0, **arm.train}
    config, fields = resolve(read_config_file(None), flags, arm.fields)
    trainer, _ = start_training(config, fields)
    summary = trainer.fit()
    return {"val_bits_per_byte": summary["val_bits_per_byte"], "steps": summary["steps"], "params": summary["params"],
            "train_tokens_per_second": summary["train_tokens_per_second"], "dtype": summary["dtype"]}


def summarize(arm: Arm, runs: list[dict]) -> dict:
    scores = [r["val_bits_per_byte"] for r in runs]
    return {"model": arm.model, "arm": arm.name, "train": arm.train, "fields": arm.fields, "runs": runs,
            "median": statistics.median(scores), "spread": max(scores) - min(scores),
            "tokens_per_second": statistics.median(r["train_tokens_per_second"] for r in runs),
            "params": runs[0]["params"]}


def verdicts(rows: list[dict]) -> list[dict]:
    """Each row with its difference from its model's baseline and whether it wins by more than the spread."""
    baselines = {row["model"]: row for row in rows if row["arm"] == "baseline"}
    for row in rows:
        base = baselines.get(row["model"])
        row["delta"] = None if base is None else row["median"] - base["median"]
        row["wins"] = base is not None and row is not base and -row["delta"] > max(row["spread"], base["spread"])
    return rows


def run_ablation(arms: list[Arm], data: str, budget: float, seeds: int, out: str | Path, dtype: str = "auto") -> list[dict]:
    """Train every arm `seeds` times (one run at a time), then write results.json, results.md and a plot."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for arm in arms:
        runs = []
        for seed in range(seeds):
            print(f"[ablation] {arm.label} seed {seed}: {budget:.0f}s", flush=True)
            run_dir = str(out / "runs" / f"{arm.model}-{arm.name}-seed{seed}")
            runs.append(run_isolated(train_arm, arm, data, budget, seed, run_dir, dtype))
        rows.append(summarize(arm, runs))
        print(f"[ablation] {arm.label}: median {rows[-1]['median']:.4f} bits/byte, spread {rows[-1]['spread']:.4f}", flush=True)
    rows = verdicts(rows)
    report = {"data": data, "time_budget": budget, "seeds": seeds, "dtype": dtype, "rows": rows}
    write_json(out / "results.json", report)
    write_text(out / "results.md", markdown_table(report))
    plot_ablation(rows, out / "ablation.png")
    return rows


def markdown_table(report: dict) -> str:
    lines = [f"Ablation: {report['time_budget']:.0f} s per run, {report['seeds']} seeds, dtype {report['dtype']}, "
             f"data {report['data']}, bytes.\n",
             "| model | arm | params | median val bits/byte | spread | Δ vs baseline | wins | train tok/s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        delta = "" if row["arm"] == "baseline" or row["delta"] is None else f"{row['delta']:+.4f}"
        lines.append(f"| {row['model']} | {row['arm']} | {row['params']:,} | {row['median']:.4f} | {row['spread']:.4f} | "
                     f"{delta} | {'yes' if row['wins'] else ''} | {row['tokens_per_second']:,.0f} |")
    return "\n".join(lines) + "\n"


def plot_ablation(rows: list[dict], path: Path) -> None:
    """Every seed's score as a dot and the median as a bar, per arm, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(row["model"] for row in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [row for row in rows if row["model"] == model]
        for i, row in enumerate(mine):
            ax.barh(i, row["median"], color="tab:green" if row["wins"] else "tab:blue", alpha=0.4)
            ax.plot([r["val_bits_per_byte"] for r in row["runs"]], [i] * len(row["runs"]), "k.")
        scores = [r["val_bits_per_byte"] for row in mine for r in row["runs"]]
        ax.set_xlim(min(scores) - 0.02, max(scores) + 0.02)
        ax.set_yticks(range(len(mine)), [row["arm"] for row in mine])
        ax.invert_yaxis()
        ax.set(title=model, xlabel="val bits per byte (lower is better)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
