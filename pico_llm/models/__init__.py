"""Encoders and the registry that names them."""

from .base import BaseConfig, LanguageModel
from .registry import (
    build_model,
    make_config,
    model_class,
    model_names,
    model_spec,
    register_model,
)

__all__ = [
    "BaseConfig",
    "LanguageModel",
    "build_model",
    "make_config",
    "model_class",
    "model_names",
    "model_spec",
    "register_model",
]
