"""Device and precision choice: detect what the hardware supports, never assume it."""

from __future__ import annotations

import platform
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch

from ..errors import PicoError


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA, then Apple MPS, then the CPU; an explicit choice must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(name, False):
        raise PicoError(f"--device {name} is not available on this machine; use --device auto or cpu")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True when the CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for `--dtype`; `auto` is bfloat16 where the hardware has it natively."""
    if name != "auto":
        dtype = getattr(torch, name)
        if dtype == torch.float16 and device.type == "cpu":
            raise PicoError("--dtype float16 is not supported on the CPU; use bfloat16 or float32")
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def autocast_for(device: torch.device, dtype: torch.dtype):
    """A zero-argument context factory: autocast to `dtype`, or nothing for float32."""
    if dtype == torch.float32:
        return nullcontext
    return partial(torch.autocast, device_type=device.type, dtype=dtype)
