"""Run configuration: the training dataclass, the JSON config file, how flags override it, and the
one place where every config value is checked.

Precedence, lowest first: dataclass defaults < the file's "train" section < the file's
"models.<name>.train" section < command-line flags. Model fields follow the same order: the
registry's defaults, the file's "model" section (fields every model has, such as `context`),
"models.<name>.model", then flags. Unknown keys are errors, so a typo never silently does nothing.

Every field of a config dataclass (TrainConfig here, each model's config in models/) is checked by
`check_fields` when the dataclass is built: its type, that a number is finite, and the range or
choices its `option(...)` declares. A bad value is one `PicoError` line naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PicoError

DEFAULT_CONFIG_FILE = Path("experiments/config.json")
MAX_SEED = 2**63 - 1
OPTIMIZERS = ("adamw", "muon")
NS_COEFFICIENTS = ("jordan", "polar_express")  # Muon's Newton–Schulz quintics (training/muon.py)
SCHEDULES = ("cosine", "wsd")


def option(default, *, min=None, max=None, above=None, below=None, choices=None):
    """A dataclass field with the range (`min` ≤ x ≤ `max`, `above` < x < `below`) or `choices` it must obey."""
    rules = {k: v for k, v in dict(min=min, max=max, above=above, below=below, choices=choices).items() if v is not None}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=rules)
    return field(default=default, metadata=rules)


def _describe(annotation) -> str:
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
    return names.get(annotation, str(annotation))


def _check_type(name: str, value, annotation):
    """`value` as `annotation` says (a list becomes a tuple, an int a float), or a PicoError."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (annotation,) = [a for a in args if a is not type(None)]
        return _check_type(name, value, annotation)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise PicoError(f"`{name}` must be a list, got {value!r}")
        return tuple(_check_type(name, item, args[0]) for item in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if annotation in (int, float, bool, str) and (type(value) is not annotation):
        raise PicoError(f"`{name}` must be {_describe(annotation)}, got {value!r}")
    if annotation is float and not math.isfinite(value):
        raise PicoError(f"`{name}` must be a finite number, got {value}")
    return value


def _check_rules(name: str, value, rules: dict) -> None:
    if value is None:
        return
    for item in value if isinstance(value, tuple) else (value,):
        if "choices" in rules and item not in rules["choices"]:
            raise PicoError(f"`{name}` must be one of {', '.join(map(str, rules['choices']))}, got {item!r}")
        low, high = rules.get("min"), rules.get("max")
        above, below = rules.get("above"), rules.get("below")
        if (low is not None and item < low) or (high is not None and item > high) or \
                (above is not None and item <= above) or (below is not None and item >= below):
            bounds = [f"≥ {low}" if low is not None else "", f"> {above}" if above is not None else "",
                      f"≤ {high}" if high is not None else "", f"< {below}" if below is not None else ""]
            raise PicoError(f"`{name}` must be {' and '.join(b for b in bounds if b)}, got {item}")


def check_fields(config) -> None:
    """Check (and normalise: lists to tuples, ints to floats) every field of a config dataclass in place."""
    hints = typing.get_type_hints(type(config))
    for spec in dataclasses.fields(config):
        value = _check_type(spec.name, getattr(config, spec.name), hints[spec.name])
        _check_rules(spec.name, value, spec.metadata)
        object.__setattr__(config, spec.name, value)


@dataclass
class TrainConfig:
    """Everything about a run that is not the model's own shape (the context length is the model's)."""

    model: str = "kgram_cnn"
    plugins: tuple[str, ...] = ()
    data: str = "data/sample_text.txt"
    val_data: str | None = None
    text_field: str = "text"
    tokenize_workers: int | None = option(None, min=1, max=1024)
    tokenizer: str = option("byte", choices=("byte", "char", "bpe"))
    vocab_size: int = option(1024, min=1, max=1 << 20)
    batch_size: int = option(32, min=1, max=1 << 20)
    grad_accum: int = option(1, min=1, max=1 << 20)
    optimizer: str = option("adamw", choices=OPTIMIZERS)
    lr: float = option(3e-3, above=0.0, max=10.0)
    muon_lr: float = option(0.02, above=0.0, max=10.0)
    muon_momentum: float = option(0.95, min=0.0, below=1.0)
    muon_momentum_warmup: int = option(300, min=0)
    muon_weight_decay: float = option(0.0, min=0.0, max=10.0)
    muon_ns_steps: int = option(5, min=1, max=20)
    muon_ns_coefficients: str = option("jordan", choices=NS_COEFFICIENTS)
    schedule: str = option("cosine", choices=SCHEDULES)
    cooldown: float = option(0.4, above=0.0, max=1.0)
    min_lr_ratio: float = option(0.1, min=0.0, max=1.0)
    warmup_steps: int = option(100, min=0)
    weight_decay: float = option(0.1, min=0.0, max=10.0)
    beta2: float = option(0.99, above=0.0, below=1.0)
    grad_clip: float = option(1.0, min=0.0)
    epochs: float | None = option(None, above=0.0)
    max_steps: int | None = option(None, min=1)
    time_budget: float | None = option(None, above=0.0)
    eval_every: int = option(250, min=1)
    eval_tokens: int = option(32768, min=1)
    log_every: int = option(10, min=1)
    seed: int = option(1337, min=0, max=MAX_SEED)
    device: str = option("auto", choices=("auto", "cpu", "cuda", "mps"))
    dtype: str = option("auto", choices=("auto", "float32", "bfloat16", "float16"))
    compile: bool = False
    out: str | None = None
    sample_prompt: str = "\n"
    sample_tokens: int = option(200, min=0, max=10_000)
    tensorboard: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)

    def validate(self) -> TrainConfig:
        """Check the fields again (after they were changed in place); returns self."""
        check_fields(self)
        return self

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A TrainConfig from a saved or hand-written dict; unknown keys are errors, old ones are dropped."""
        values = {k: v for k, v in values.items() if k not in LEGACY_TRAIN_FIELDS}
        _reject_unknown(values, TRAIN_FIELDS, "the train config")
        return cls(**values)


TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
LEGACY_TRAIN_FIELDS = {"context"}  # run folders made when the context was a train field (it is the model's)
MODEL_SECTION_FIELDS = {"context", "pos_embedding", "stack"}  # what every model's config has


def read_config_file(path: str | Path | None) -> dict:
    """The config file as a dict ({} when the default file is absent); validates its shape and values."""
    if path is None:
        if not DEFAULT_CONFIG_FILE.is_file():
            return {}
        path = DEFAULT_CONFIG_FILE
    path = Path(path)
    if not path.is_file():
        raise PicoError(f"config file {path} does not exist; pass `config` the path of a JSON file")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicoError(f"config file {path} is not valid JSON ({err}); fix it or pass another `config`") from None
    if not isinstance(content, dict):
        raise PicoError(f"config file {path} must hold a JSON object with 'train', 'model' and 'models' sections")
    _reject_unknown(content, {"train", "model", "models"}, f"{path}")
    sections = {f"{path} 'train'": content.get("train", {})}
    _reject_unknown(content.get("model", {}), MODEL_SECTION_FIELDS, f"{path} 'model'")
    _reject_unknown(content.get("models", {}), set(content.get("models", {})), f"{path} 'models'")
    for name, section in content.get("models", {}).items():
        _reject_unknown(section, {"model", "train"}, f"{path} 'models.{name}'")
        _reject_unknown(section.get("model", {}), set(section.get("model", {})), f"{path} 'models.{name}.model'")
        sections[f"{path} 'models.{name}.train'"] = section.get("train", {})
    for where, section in sections.items():
        _reject_unknown(section, TRAIN_FIELDS, where)
        try:
            TrainConfig(**section)
        except PicoError as err:
            raise PicoError(f"{where}: {err}") from None
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
    """Merge defaults, file sections and flags into a checked TrainConfig and the model's fields."""
    train = dict(file_config.get("train", {}))
    model_name = train_flags.get("model") or train.get("model") or TrainConfig.model
    section = file_config.get("models", {}).get(model_name, {})
    train.update(section.get("train", {}))
    train.update({k: v for k, v in train_flags.items() if v is not None})
    train["model"] = model_name
    model_fields = {**file_config.get("model", {}), **section.get("model", {}), **model_flags}
    return TrainConfig(**train), model_fields
