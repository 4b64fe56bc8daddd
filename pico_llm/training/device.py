"""Device and precision choice: detect what the hardware supports, never assume it."""

from __future__ import annotations

import platform
import time
import warnings
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


def cuda_has_bf16() -> bool:
    """True on GPUs with native bfloat16 (Ampere on); PyTorch's default check also counts slow emulation."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for `--dtype`; `auto` is bfloat16 where the hardware has it natively."""
    if name != "auto":
        dtype = getattr(torch, name)
        if dtype == torch.float16 and device.type == "cpu":
            raise PicoError("--dtype float16 is not supported on the CPU; use bfloat16 or float32")
        if dtype == torch.bfloat16 and device.type == "cuda" and not cuda_has_bf16():
            raise PicoError("--dtype bfloat16 is not native on this GPU (before Ampere); use float16 or auto")
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def fastest_dtype(model: torch.nn.Module, candidates, windows: int, context: int, device: torch.device) -> torch.dtype:
    """The autocast dtype among `candidates` with the fastest forward + backward on a random batch.

    Leaves no trace: gradients are cleared and the global RNG (dropout) is restored afterwards.
    """
    tokens = torch.randint(model.config.vocab_size, (windows, context), generator=torch.Generator().manual_seed(0))
    tokens = tokens.to(device)
    timings = {dtype: [] for dtype in candidates}
    with torch.random.fork_rng(devices=[]):
        for _ in range(4):  # interleaved, so a noisy moment hurts both; the first round only warms up
            for dtype in candidates:
                start = time.perf_counter()
                with autocast_for(device, dtype)():
                    loss = model(tokens).float().logsumexp(-1).mean()
                loss.backward()
                model.zero_grad(set_to_none=True)
                timings[dtype].append(time.perf_counter() - start)
    return min(candidates, key=lambda dtype: min(timings[dtype][1:]))


def compile_if_asked(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`torch.compile(model)` when asked and it works here; otherwise the model, with a warning."""
    if not enabled:
        return model
    try:
        compiled = torch.compile(model)
        with torch.no_grad():
            compiled(torch.zeros(1, 8, dtype=torch.long, device=next(model.parameters()).device))
        return compiled
    except Exception as err:  # no compiler, unsupported platform or backend: training still works eagerly
        warnings.warn(f"--compile is unavailable here ({type(err).__name__}: {err}); training without it", stacklevel=2)
        return model


def autocast_for(device: torch.device, dtype: torch.dtype):
    """A zero-argument context factory: autocast to `dtype`, or nothing for float32."""
    if dtype == torch.float32:
        return nullcontext
    return partial(torch.autocast, device_type=device.type, dtype=dtype)
