"""Dropout whose masks are cheap to draw on any CPU.

PyTorch's CPU `bernoulli_` (behind `nn.Dropout` and attention dropout) draws with MKL's parallel
generator only when the CPU's vendor is Intel; on an AMD EPYC it falls back to a serial loop, about
11 ns an element: 0.35 s for the attention probabilities of one layer at nanoGPT's 10.65M shape
(64 × 6 heads × 256 × 256), 13% of a whole float32 training step on 2 cores (BENCHMARKS.md).
Here a CPU mask comes from numpy's PCG64 as 16-bit integers compared with a threshold (about 10×
faster), seeded from torch's generator, so runs stay reproducible and a checkpoint that restores
torch's RNG state resumes the same masks. GPUs keep PyTorch's own dropout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 1 << 16  # the drop probability is rounded to a multiple of 1/65536


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A bool CPU tensor of `shape`, each element True with probability 1 - q, and q: `p` on the 1/65536 grid."""
    threshold = round(p * LEVELS)
    seed = int(torch.randint(0, 1 << 62, ()))
    draws = np.random.default_rng(seed).integers(0, LEVELS, size=tuple(shape), dtype=np.uint16)
    return torch.from_numpy(draws >= threshold), threshold / LEVELS


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout`, with the mask drawn by `keep_mask` on the CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    mask, q = keep_mask(x.shape, p)
    return torch.where(mask, x, 0.0) * (1.0 / (1.0 - q))


class Dropout(nn.Module):
    """`nn.Dropout` through `dropout`: the same behaviour, a faster mask on the CPU."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
