"""Model weights as safetensors: no pickle, tied tensors stored once, no wrapper prefixes.

`model.safetensors` is what a run folder and a pretrained folder keep their weights in. safetensors
holds tensors and a string-to-string header only, so loading a file can never run code. A tensor two
parameters share (tied embeddings) is stored once under the first of its names and is tied again on
load, because the model built from its config ties it. Wrappers never reach a file: the weights of a
`torch.compile`d model (`_orig_mod.`) or a DistributedDataParallel one (`module.`) are the inner
model's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from .errors import PicoError
from .files import atomic_file

WEIGHTS_FILE = "model.safetensors"


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside torch.compile's and DDP's wrappers."""
    while isinstance(getattr(model, "_orig_mod", None), nn.Module) or isinstance(model, nn.parallel.DistributedDataParallel):
        model = model._orig_mod if hasattr(model, "_orig_mod") else model.module
    return model


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """{alias: kept name} for every tensor of the state dict that shares its storage with an earlier one."""
    first_of: dict[tuple, str] = {}
    aliases = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor is None:
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if key in first_of:
            aliases[name] = first_of[key]
        else:
            first_of[key] = name
    return aliases


def weights_of(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The tensors to store: the unwrapped model's state, each shared tensor once, contiguous; floating
    point ones in `dtype` if given (integer ones, such as int8 weights, stay as they are)."""
    model = unwrap(model)
    aliases = tied_aliases(model)
    cast = (lambda t: t.to(dtype) if dtype is not None and t.is_floating_point() else t)
    return {name: cast(tensor.detach()).contiguous() for name, tensor in model.state_dict().items()
            if name not in aliases and tensor is not None}


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None,
                 dtype: torch.dtype | None = None) -> None:
    """Write `model`'s weights to `path` atomically (a kill leaves the old file or the new one)."""
    with atomic_file(path) as handle:
        handle.write(save(weights_of(model, dtype), metadata=metadata))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the header metadata of a safetensors file; a damaged file is a PicoError."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}, handle.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise PicoError(f"cannot read the weights {path} ({type(err).__name__}); the file is damaged or not safetensors") from None


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Load stored `tensors` into `model` (built from the same config): every tensor must fit, and only
    tied aliases may be missing, so a file from another model is a clear error, not silent garbage."""
    expected = set(model.state_dict()) - set(tied_aliases(model))
    if set(tensors) != expected:
        missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise PicoError(f"the weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                        "they belong to another model")
    try:
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise PicoError(f"the weights do not fit this model ({str(err).splitlines()[-1].strip()}); they belong to another model") from None
    return model
