"""Load a trained model back from its run folder: config, weights and tokenizer, checked as they are read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.tokenizers import Tokenizer, tokenizer_from_state
from ..errors import PicoError, warn
from ..models.registry import build_model, load_plugins, same_spec
from ..training.checkpoint import load_checkpoint
from ..training.runtime import pick_device
from .generation import generate

CHECKPOINTS = {"best": ("best.pt", "checkpoint.pt"), "latest": ("checkpoint.pt",)}


@dataclass
class Run:
    """A trained model loaded from its run folder; `config` is the folder's config.json."""

    path: Path
    model: torch.nn.Module
    tokenizer: Tokenizer
    config: dict

    def generate(self, prompt: str = "", max_new_tokens: int = 200, **kwargs):
        return generate(self, prompt, max_new_tokens, **kwargs)

    @property
    def runtime(self) -> dict:
        """How the run trained (device, dtype, ...), as recorded; {} for folders made before it was."""
        return self.config.get("runtime", {})


def read_run_config(path: str | Path) -> dict:
    """A run folder's config.json, checked to be one (a torn, empty or foreign file is a one-line error)."""
    config_path = Path(path, "config.json")
    if not config_path.is_file():
        raise PicoError(f"{path} is not a run folder (no config.json); pass a folder written by `pico-llm train`")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicoError(f"{config_path} is damaged ({type(err).__name__}: {err}); restore it, or train the run again") from None
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict) or not isinstance(config.get("model"), dict):
        raise PicoError(f"{config_path} is not a pico-llm run config (it needs 'train' and 'model' objects); restore it")
    return config


def _load_first_good(path: Path, names: tuple[str, ...]) -> dict:
    """The first of the checkpoints `names` that loads; a damaged one is skipped with a warning."""
    present = [path / name for name in names if (path / name).is_file()]
    if not present:
        raise PicoError(f"{path} has no checkpoint yet; train it (or resume it) first")
    for index, file in enumerate(present):
        try:
            return load_checkpoint(file)
        except PicoError as err:
            if index + 1 == len(present):
                raise
            warn(f"{err}; using {present[index + 1].name} instead")
    raise AssertionError("unreachable")


def load_run(path: str | Path, checkpoint: str = "best", device: str = "auto") -> Run:
    """Load a run folder's model (the best checkpoint by default, or `latest`) and tokenizer."""
    path = Path(path)
    config = read_run_config(path)
    if checkpoint not in CHECKPOINTS:
        raise PicoError(f"`checkpoint` must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    load_plugins(config["train"].get("plugins", ()))
    state = _load_first_good(path, CHECKPOINTS[checkpoint])
    if not same_spec(state.get("model_spec"), config["model"]):
        raise PicoError(f"the checkpoint in {path} holds another model than its config.json describes; it belongs to another run")
    model = build_model(state["model_spec"])
    model.load_state_dict(state["model"])
    tokenizer = tokenizer_from_state(state["tokenizer"])
    model.to(pick_device(device)).eval()
    return Run(path, model, tokenizer, config)
