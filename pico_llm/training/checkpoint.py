"""Checkpoints: written atomically, loaded without running code.

`save_checkpoint` writes through `files.atomic_file` (a temporary file in the same folder, flushed to
disk, renamed over the old one), so a kill at any moment leaves either the previous or the new
checkpoint, never a torn file, and a full disk leaves the previous one intact. `load_checkpoint` uses
`weights_only=True`: a checkpoint holds tensors and plain values, and a malicious file cannot execute
code when loaded.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .. import files
from ..errors import PicoError

CHECKPOINT_FORMAT = 1


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Serialise in memory, then write: torch's zip writer would turn a full disk into an opaque RuntimeError."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    with files.atomic_file(path) as handle:
        handle.write(buffer.getbuffer())


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise PicoError(f"checkpoint {path} does not exist; train a model first or pass a run folder that has one")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a torn, foreign or unsafe file: all the user can do is pick another
        raise PicoError(f"cannot load checkpoint {path} ({type(err).__name__}); it is damaged or not a pico-llm checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PicoError(f"{path} is not a pico-llm checkpoint (format {CHECKPOINT_FORMAT})")
    return state
