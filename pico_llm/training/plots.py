"""curves.png: train/val loss and val perplexity against steps and against wall time."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_file


def plot_curves(records: list[dict], path: str | Path) -> None:
    """Draw the metrics log as a 2×2 grid; matplotlib is imported here so the core stays light."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter

    train = [r for r in records if r.get("train_loss") is not None]
    val = [r for r in records if r.get("val_loss") is not None]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.95, wspace=0.2, hspace=0.35)  # constrained layout costs 0.4 s a plot
    for column, (x_key, x_label) in enumerate([("step", "step"), ("wall_seconds", "wall time (s)")]):
        loss_ax, ppl_ax = axes[0, column], axes[1, column]
        loss_ax.plot([r[x_key] for r in train], [r["train_loss"] for r in train], label="train loss", alpha=0.7)
        loss_ax.plot([r[x_key] for r in val], [r["val_loss"] for r in val], "o-", label="val loss")
        loss_ax.set(xlabel=x_label, ylabel="loss (nats/token)", title=f"loss vs {x_label}")
        loss_ax.legend()
        ppl_ax.plot([r[x_key] for r in val], [r["val_perplexity"] for r in val], "o-", color="tab:green")
        ppl_ax.set(xlabel=x_label, ylabel="val perplexity", title=f"val perplexity vs {x_label}", yscale="log")
        for set_formatter in (ppl_ax.yaxis.set_major_formatter, ppl_ax.yaxis.set_minor_formatter):
            set_formatter(LogFormatter(labelOnlyBase=False))  # plain labels: the default mathtext ones cost 0.1 s a plot
        for ax in (loss_ax, ppl_ax):
            ax.grid(alpha=0.3)
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png", dpi=90)
    plt.close(fig)


def plot_comparison(curves: dict[str, list[dict]], path: str | Path) -> None:
    """Val bits per byte of several runs, overlaid, against steps and against wall time (`pico-llm compare`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.9, wspace=0.18)
    for x_key, x_label, ax in (("step", "step", axes[0]), ("wall_seconds", "wall time (s)", axes[1])):
        for name, points in curves.items():
            ax.plot([p[x_key] for p in points], [p["val_bits_per_byte"] for p in points], "o-", markersize=3, label=name)
        ax.set(xlabel=x_label, ylabel="val bits per byte", title=f"val bits per byte vs {x_label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png", dpi=90)
    plt.close(fig)
