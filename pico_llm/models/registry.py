"""Model registry: maps a name to an encoder class, so a new encoder is one file and one decorator.

A model is described by its registered name plus its dataclass config; `model_spec` turns that into
plain JSON and `build_model` turns JSON back into a model, which is how a checkpoint rebuilds its own
model without pickled code.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import pkgutil
import sys
from pathlib import Path
from typing import Any

from ..errors import PicoError

MODELS: dict[str, type] = {}


def register_model(name: str):
    """Class decorator: make an encoder available as `--model NAME`."""

    def decorate(cls):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        cls.name = name
        MODELS[name] = cls
        return cls

    return decorate


def _load_builtin_models() -> None:
    """Import every module of this package once so their decorators run."""
    from . import __path__ as package_path

    for info in pkgutil.iter_modules(package_path):
        importlib.import_module(f"{__package__}.{info.name}")


def load_plugins(paths) -> None:
    """Import encoder files given by path (e.g. `--plugins my_encoder.py`) so they register themselves."""
    for path in paths:
        path = Path(path).resolve()
        module_name = f"pico_llm_plugin_{path.stem}"
        if module_name in sys.modules:
            continue
        if not path.is_file():
            raise PicoError(f"plugin file {path} does not exist; give `plugins` the path of a .py file with an encoder in it")
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)


def model_class(name: str) -> type:
    _load_builtin_models()
    if name not in MODELS:
        raise PicoError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))} (see `pico-llm models`)")
    return MODELS[name]


def model_names() -> list[str]:
    _load_builtin_models()
    return sorted(MODELS)


def make_config(name: str, **fields: Any):
    """The named model's config with `fields` overriding its defaults; unknown fields are an error."""
    config_cls = model_class(name).Config
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        fields = ", ".join(f"`{u}`" for u in unknown)
        raise PicoError(f"model {name!r} has no field {fields}; its fields are: {', '.join(sorted(known))}")
    try:
        return config_cls(**fields)
    except (TypeError, ValueError) as err:
        raise PicoError(f"bad {name} config: {err}") from None


def build_model(name_or_spec: str | dict, **fields: Any):
    """Build a model from its name and config fields, or from a spec dict written by `model_spec`."""
    if isinstance(name_or_spec, dict):
        spec = dict(name_or_spec)
        name = spec.pop("name")
        fields = {**spec, **fields}
    else:
        name = name_or_spec
    return model_class(name)(make_config(name, **fields))


def model_spec(model) -> dict:
    """JSON-serialisable description of a model: its name and every config field."""
    return {"name": model.name, **dataclasses.asdict(model.config)}


def same_spec(a: dict | None, b: dict | None) -> bool:
    """Whether two model specs describe the same model (one may have been through JSON: lists for tuples)."""
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))
