"""Distributed data parallel: which process this is in a `torchrun` job, and the few collectives the loop needs.

`torchrun --nproc_per_node=N -m pico_llm train ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set. `join` makes each one a member of the job (gloo on the CPU, nccl on CUDA, each
process on GPU LOCAL_RANK); without those variables it does nothing and training is single-process.
The gradient all-reduce itself is PyTorch's DistributedDataParallel, applied by the Trainer.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import PicoError

PREPARE_TIMEOUT = timedelta(days=1)


@dataclass(frozen=True)
class Place:
    """This process's place in the job: its global rank, the number of processes, its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates and writes the run folder and checkpoints."""
        return self.rank == 0

    @contextmanager
    def local_main_first(self):
        """Run the block on each machine's first process, then on the others, which then find its caches warm.

        The others wait in a gloo group of their own with a long timeout: tokenizing a large corpus
        may take far longer than the training group's (NCCL's is 10 minutes).
        """
        group = dist.new_group(backend="gloo", timeout=PREPARE_TIMEOUT) if self.enabled else None
        if self.enabled and self.local_rank != 0:
            dist.barrier(group)
        yield
        if self.enabled and self.local_rank == 0:
            dist.barrier(group)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over all processes (itself when single-process)."""
        if not self.enabled:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world_size

    def agree(self, elapsed: float, stop: bool, device: torch.device) -> tuple[float, bool]:
        """The largest wall time and whether any process wants to stop, so all follow one schedule and stop together."""
        if not self.enabled:
            return elapsed, stop
        state = torch.tensor([elapsed, float(stop)], dtype=torch.float64, device=device)
        dist.all_reduce(state, op=dist.ReduceOp.MAX)
        return state[0].item(), bool(state[1].item())


def join(device: torch.device) -> tuple[Place, torch.device]:
    """Join the torchrun job this process belongs to, if any (once); returns its place and its device.

    A process group the caller initialised itself (e.g. under torch.multiprocessing) is used as is.
    """
    if not dist.is_available():  # a PyTorch build without torch.distributed: single-process only
        return Place(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type not in ("cpu", "cuda"):
            raise PicoError(f"distributed training runs on CPUs (gloo) or CUDA GPUs (nccl), not {device.type}; set `device` to cpu")
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return Place(), device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    return Place(dist.get_rank(), dist.get_world_size(), local_rank), device


def leave() -> None:
    """Leave the job (if this process joined one), as PyTorch asks before exit."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
