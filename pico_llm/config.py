"""Run configuration: the training dataclass, the JSON config file, and how flags override it.

Precedence, lowest first: dataclass defaults < the file's "train" section < the file's
"models.<name>.train" section < command-line flags. Model fields follow the same order with the
registry's defaults, "models.<name>.model" and `--field-name VALUE` flags. Unknown keys are errors,
so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PicoError

DEFAULT_CONFIG_FILE = Path("experiments/config.json")


@dataclass
class TrainConfig:
    """Everything about a run that is not the model's own shape."""

    model: str = "kgram_cnn"
    plugins: tuple[str, ...] = ()
    data: str = "data/sample_text.txt"
    val_data: str | None = None
    text_field: str = "text"
    tokenize_workers: int | None = None
    tokenizer: str = "byte"
    vocab_size: int = 1024
    context: int = 128
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    epochs: float | None = None
    max_steps: int | None = None
    time_budget: float | None = None
    eval_every: int = 250
    eval_tokens: int = 32768
    log_every: int = 10
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    out: str | None = None
    sample_prompt: str = "\n"
    sample_tokens: int = 200

    def validate(self) -> "TrainConfig":
        positive = ["context", "batch_size", "grad_accum", "eval_every", "eval_tokens", "log_every", "vocab_size"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise PicoError(f"--{flag(name)} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise PicoError(f"--lr must be a positive learning rate, got {self.lr}")
        for name in ("epochs", "max_steps", "time_budget", "tokenize_workers"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise PicoError(f"--{flag(name)} must be positive, got {value}")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "sample_tokens"):
            if getattr(self, name) < 0:
                raise PicoError(f"--{flag(name)} cannot be negative, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise PicoError(f"--min-lr-ratio must be between 0 and 1, got {self.min_lr_ratio}")
        if not 0 < self.beta2 < 1:
            raise PicoError(f"--beta2 must be between 0 and 1, got {self.beta2}")
        choices = {"device": ("auto", "cpu", "cuda", "mps"), "dtype": ("auto", "float32", "bfloat16", "float16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise PicoError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        return self


def flag(field_name: str) -> str:
    return field_name.replace("_", "-")


TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def read_config_file(path: str | Path | None) -> dict:
    """The config file as a dict ({} when the default file is absent); validates its top-level shape."""
    if path is None:
        if not DEFAULT_CONFIG_FILE.is_file():
            return {}
        path = DEFAULT_CONFIG_FILE
    path = Path(path)
    if not path.is_file():
        raise PicoError(f"config file {path} does not exist; pass --config PATH to a JSON file")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicoError(f"config file {path} is not valid JSON ({err}); fix it or pass another --config") from None
    if not isinstance(content, dict):
        raise PicoError(f"config file {path} must hold a JSON object with 'train' and 'models' sections")
    _reject_unknown(content, {"train", "models"}, f"{path}")
    _reject_unknown(content.get("train", {}), TRAIN_FIELDS, f"{path} 'train'")
    for name, section in content.get("models", {}).items():
        _reject_unknown(section, {"model", "train"}, f"{path} 'models.{name}'")
        _reject_unknown(section.get("train", {}), TRAIN_FIELDS, f"{path} 'models.{name}.train'")
    return content


def _reject_unknown(section: Any, allowed: set[str], where: str) -> None:
    if not isinstance(section, dict):
        raise PicoError(f"{where} must be a JSON object")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise PicoError(f"unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(sorted(allowed))}")


def resolve(
    file_config: dict, train_flags: dict[str, Any], model_flags: dict[str, Any]
) -> tuple[TrainConfig, dict[str, Any]]:
    """Merge defaults, file sections and flags into a validated TrainConfig and model fields."""
    train = dict(file_config.get("train", {}))
    model_name = train_flags.get("model") or train.get("model") or TrainConfig.model
    section = file_config.get("models", {}).get(model_name, {})
    train.update(section.get("train", {}))
    train.update({k: v for k, v in train_flags.items() if v is not None})
    train["model"] = model_name
    config = TrainConfig(**train).validate()
    model_fields = {**section.get("model", {}), **model_flags}
    return config, model_fields
