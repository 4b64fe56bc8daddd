"""Load a trained model back: from a run folder or a pretrained folder, checked as it is read.

A pretrained folder is three files, `config.json` (the model's spec), `model.safetensors` and
`tokenizer.json`: what `pico-llm export --format safetensors` writes, and a subset of every run
folder, so both load the same way. A run folder may also have `checkpoint.pt` (the latest training
state, for resume) and, if made before safetensors, `best.pt`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.tokenizers import Tokenizer, load_tokenizer, tokenizer_from_state
from ..errors import PicoError, warn
from ..models.registry import build_model, load_plugins, same_spec
from ..training.checkpoint import load_checkpoint
from ..training.runtime import pick_device
from ..weights import WEIGHTS_FILE, load_weights, read_weights
from .generation import generate
from .quantize import int8_layout

CHECKPOINTS = {"best": (WEIGHTS_FILE, "best.pt", "checkpoint.pt"), "latest": ("checkpoint.pt",)}


@dataclass
class Run:
    """A trained model loaded from its folder; `config` is the folder's config.json."""

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
    """A run or pretrained folder's config.json, checked to be one (a torn, empty or foreign file is one line)."""
    config_path = Path(path, "config.json")
    if not config_path.is_file():
        raise PicoError(f"{path} is not a run folder (no config.json); pass a folder written by `pico-llm train`")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicoError(f"{config_path} is damaged ({type(err).__name__}: {err}); restore it, or train the run again") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or \
            not isinstance(config.get("train", {}), dict) or "name" not in config["model"]:
        raise PicoError(f"{config_path} is not a pico-llm config (it needs a 'model' object with the model's name); restore it")
    return config


def _load_weights_file(model: torch.nn.Module, file: Path, spec: dict) -> torch.nn.Module:
    """`model` (built from `spec`) with the weights of `file`: safetensors (maybe int8) or a checkpoint."""
    if file.suffix == ".safetensors":
        tensors, metadata = read_weights(file)
        if metadata.get("quantize") == "int8":
            model = int8_layout(model)
        return load_weights(model, tensors)
    state = load_checkpoint(file)
    if not same_spec(state.get("model_spec"), spec):
        raise PicoError(f"{file} holds another model than its config.json describes; it belongs to another run")
    model.load_state_dict(state["model"])
    return model


def _load_first_good(path: Path, names: tuple[str, ...], spec: dict) -> torch.nn.Module:
    """The model with the weights of the first of `names` that loads; a damaged one is skipped with a warning."""
    present = [path / name for name in names if (path / name).is_file()]
    if not present:
        raise PicoError(f"{path} has no weights yet ({' or '.join(names)}); train it (or resume it) first")
    for index, file in enumerate(present):
        try:
            return _load_weights_file(build_model(spec), file, spec)
        except PicoError as err:
            if index + 1 == len(present):
                raise
            warn(f"{err}; using {present[index + 1].name} instead")
    raise AssertionError("unreachable")


def load_run(path: str | Path, checkpoint: str = "best", device: str = "auto") -> Run:
    """Load a run or pretrained folder's model (the best weights by default, or `latest`) and tokenizer."""
    path = Path(path)
    config = read_run_config(path)
    if checkpoint not in CHECKPOINTS:
        raise PicoError(f"`checkpoint` must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    load_plugins(config.get("plugins") or config.get("train", {}).get("plugins", ()))
    model = _load_first_good(path, CHECKPOINTS[checkpoint], config["model"])
    model.to(pick_device(device)).eval()
    return Run(path, model, _tokenizer(path), config)


def _tokenizer(path: Path) -> Tokenizer:
    """The folder's tokenizer.json; a run folder that lost it still has the tokenizer in its checkpoint."""
    if (path / "tokenizer.json").is_file() or not (path / "checkpoint.pt").is_file():
        return load_tokenizer(path)
    return tokenizer_from_state(load_checkpoint(path / "checkpoint.pt")["tokenizer"])


def from_pretrained(path: str | Path, device: str = "auto") -> tuple[torch.nn.Module, Tokenizer]:
    """The model (in eval mode) and tokenizer of a pretrained folder (or a run folder): what other code builds on."""
    run = load_run(path, device=device)
    return run.model, run.tokenizer
