"""The run folder: what a training run leaves behind, and how to load it back.

    RUN_DIR/config.json      the fully resolved config (train + model)
            metrics.jsonl    one JSON object per log/eval event
            checkpoint.pt    latest state (model, optimizer, RNG, step) for --resume
            best.pt          weights with the best val loss
            tokenizer.json   the tokenizer, so generation and eval need nothing else
            curves.png       loss and perplexity against steps and wall time
            samples.txt      text generated from a fixed prompt at each eval
            summary.json     final metrics
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import PicoError
from ..generation import generate
from ..models.registry import build_model, load_plugins, model_spec
from ..tokenizers import Tokenizer, tokenizer_from_state
from .checkpoint import load_checkpoint
from .device import pick_device
from .plots import plot_curves
from .trainer import Callback, Trainer

SAMPLE_SEED = 1234


def default_run_dir(model_name: str) -> Path:
    return Path("experiments/results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{model_name}"


def write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


class RunFolder(Callback):
    """Writes the run folder's files as training proceeds."""

    def __init__(self, path: str | Path, config: TrainConfig, model: torch.nn.Module, tokenizer: Tokenizer):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.tokenizer = tokenizer
        write_json(self.path / "config.json", {"train": asdict(config), "model": model_spec(model)})
        tokenizer.save(self.path)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def records(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def _append(self, record: dict) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_log(self, trainer: Trainer, record: dict) -> None:
        self._append(record)

    def on_eval(self, trainer: Trainer, record: dict) -> None:
        self._append(record)
        cfg = trainer.config
        # no autocast: a sample is a few hundred one-token steps, where casting costs more than it saves
        # (the baby GPT samples 710 tokens/s in float32 on the CPU, 460 under bfloat16 autocast)
        text = generate(trainer.model, cfg.sample_prompt, cfg.sample_tokens, tokenizer=self.tokenizer, seed=SAMPLE_SEED)
        with open(self.path / "samples.txt", "a") as handle:
            handle.write(f"=== step {trainer.step} (val loss {record['val_loss']:.4f}) ===\n{text}\n\n")

    def on_train_end(self, trainer: Trainer, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)
        self.plot()

    def plot(self) -> None:
        plot_curves(self.records(), self.path / "curves.png")


@dataclass
class Run:
    """A trained model loaded from its run folder."""

    path: Path
    model: torch.nn.Module
    tokenizer: Tokenizer
    config: dict

    def generate(self, prompt: str = "", max_new_tokens: int = 200, **kwargs):
        return generate(self, prompt, max_new_tokens, **kwargs)


def read_run_config(path: str | Path) -> dict:
    config_path = Path(path, "config.json")
    if not config_path.is_file():
        raise PicoError(f"{path} is not a run folder (no config.json); pass a folder written by `pico-llm train`")
    return json.loads(config_path.read_text())


def load_run(path: str | Path, checkpoint: str = "best", device: str = "auto") -> Run:
    """Load a run folder's model (the best checkpoint by default, or `latest`) and tokenizer."""
    path = Path(path)
    config = read_run_config(path)
    names = {"best": ["best.pt", "checkpoint.pt"], "latest": ["checkpoint.pt"]}[checkpoint]
    files = [path / n for n in names if (path / n).is_file()]
    if not files:
        raise PicoError(f"{path} has no checkpoint yet; train it (or resume it) first")
    load_plugins(config["train"].get("plugins", ()))
    state = load_checkpoint(files[0])
    model = build_model(state["model_spec"])
    model.load_state_dict(state["model"])
    tokenizer = tokenizer_from_state(state["tokenizer"])
    model.to(pick_device(device)).eval()
    return Run(path, model, tokenizer, config)
