"""The runtime a run trains in: device, process place, autocast dtype and compile, resolved once.

`resolve_runtime` is called once at launch. Its result is recorded in the run's config.json and
checkpoint (`Runtime.record`), handed to the trainer, and reused by resume and eval, so a resumed
run continues in the dtype it started in instead of measuring again and maybe switching. A value
set explicitly (`dtype`, `device`, `compile`) overrides the record.

Hardware support is detected from what PyTorch reports, never assumed: a CPU computes bfloat16
natively only when its flags say so (AVX512-BF16 or AMX) *and* PyTorch's kernels may use AVX-512
(`torch.backends.cpu.get_cpu_capability()`, which honours ATEN_CPU_CAPABILITY=avx2).
"""

from __future__ import annotations

import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from ..errors import PicoError, warn
from .distributed import Place, join

DTYPES = ("float32", "bfloat16", "float16")


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
        raise PicoError(f"`device` {name} is not available on this machine; use auto or cpu")
    return torch.device(name)


def cpu_capability() -> str:
    """The vector instruction set PyTorch's CPU kernels use here (AVX2, AVX512, ...)."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_has_bf16() -> bool:
    """True when the CPU does bfloat16 arithmetic natively and PyTorch is allowed to use it."""
    if cpu_capability() != "AVX512":
        return False
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_bf16() -> bool:
    """True on GPUs with native bfloat16 (Ampere on); PyTorch's default check also counts slow emulation."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for `dtype`; `auto` is bfloat16 where the hardware has it natively."""
    if name != "auto":
        if name not in DTYPES:
            raise PicoError(f"`dtype` must be auto or one of {', '.join(DTYPES)}, got {name!r}")
        dtype = getattr(torch, name)
        if dtype == torch.float16 and device.type == "cpu":
            raise PicoError("`dtype` float16 is not supported on the CPU; use bfloat16 or float32")
        if dtype == torch.bfloat16 and device.type == "cuda" and not cuda_has_bf16():
            raise PicoError("`dtype` bfloat16 is not native on this GPU (before Ampere); use float16 or auto")
        if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_bf16():
            warn(f"this CPU ({cpu_capability()}) has no native bfloat16: it is emulated and much slower than float32")
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
        warn(f"`compile` is unavailable here ({type(err).__name__}: {err}); training without it")
        return model


def autocast_for(device: torch.device, dtype: torch.dtype):
    """A zero-argument context factory: autocast to `dtype`, or nothing for float32."""
    if dtype == torch.float32:
        return nullcontext
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes: the device, this process's place in the job, the autocast dtype."""

    device: torch.device
    dtype: torch.dtype
    place: Place = field(default_factory=Place)
    compile: bool = False

    @property
    def autocast(self):
        return autocast_for(self.device, self.dtype)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def record(self) -> dict:
        """What config.json and the checkpoint keep, for resume and eval to reuse and people to read."""
        return {
            "device": self.device.type,
            "dtype": self.dtype_name,
            "world_size": self.place.world_size,
            "compile": self.compile,
            "cpu_capability": cpu_capability(),
            "torch": str(torch.__version__),
        }


def _measured_dtype(model: torch.nn.Module, name: str, device: torch.device, place: Place, windows: int) -> torch.dtype:
    """`auto` on a CPU with bfloat16: time both and keep the faster for this model.

    bfloat16 matmuls run twice as fast as float32 there, but a model gains only if its other ops
    have fast bfloat16 kernels too (the CPU's flash-attention backward is 5x slower in bfloat16,
    BENCHMARKS.md), so the choice is measured, not assumed. Multi-process runs skip the
    measurement so that every process makes the same choice.
    """
    dtype = pick_dtype(name, device)
    if name != "auto" or device.type != "cpu" or dtype == torch.float32 or place.enabled:
        return dtype
    return fastest_dtype(model, (torch.float32, dtype), min(windows, 8), model.config.context, device)


def resolve_runtime(
    model: torch.nn.Module,
    device: str = "auto",
    dtype: str = "auto",
    compile: bool = False,
    batch_size: int = 8,
    recorded: dict | None = None,
) -> Runtime:
    """The runtime for training `model`: join the torchrun job if any, pick the device and the dtype.

    `recorded` is a previous `Runtime.record()` (a resumed run's): its device and dtype are reused
    where `device` / `dtype` are left at auto. Moves `model` to the device.
    """
    recorded = recorded or {}
    if device == "auto" and recorded.get("device"):
        device = recorded["device"]
        if device != "cpu" and pick_device("auto").type != device:
            raise PicoError(f"this run trained on {device}, which this machine lacks; set `device` to cpu (or auto) to continue here")
    if dtype == "auto" and recorded.get("dtype"):
        dtype = recorded["dtype"]
    place, torch_device = join(pick_device(device))
    model.to(torch_device)
    return Runtime(torch_device, _measured_dtype(model, dtype, torch_device, place, batch_size), place, compile)
