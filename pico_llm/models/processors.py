"""Token processors: what happens between token ids and an encoder's first layer.

Shared by every encoder so that "add learned positions" or "look at the last k tokens" means the same
thing everywhere: token embedding, optional positional embedding, k-gram windowing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout


class PositionalEmbedding(nn.Module):
    """Absolute position information added to token embeddings: none, learned or sinusoidal."""

    def __init__(self, kind: str, context: int, dim: int):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(context, dim) * 0.02)
        elif kind == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(context, dim), persistent=False)

    def forward(self, x: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
        """x: [B, T, D] from position `offset` on; or one token per row [B, 1, D] at positions `offset` [B]."""
        if self.kind not in ("learned", "sinusoidal"):
            return x
        if isinstance(offset, torch.Tensor):
            return x + self.table[offset][:, None]
        return x + self.table[offset : offset + x.shape[1]]


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos position table of "Attention Is All You Need"."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class TokenInput(nn.Module):
    """The common front of every encoder: token embedding, optional stacking, positions, dropout.

    Rotary positions are applied inside attention, so here they (like "none") add nothing.
    """

    def __init__(self, config, dim: int, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, dim)
        self.stack = config.stack
        self.stack_proj = nn.Linear(config.stack * dim, dim) if config.stack > 1 else None
        self.position = PositionalEmbedding(config.pos_embedding, config.context, dim)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: torch.Tensor, state=None) -> torch.Tensor:
        """Embed a whole sequence from position 0; with a decode `state`, also fill its stack buffer."""
        x = self.embed(tokens)
        if self.stack_proj is not None:
            if state is not None:
                state.caches["input"] = tail(x, self.stack - 1)
            x = self.stack_proj(kgram_window(x, self.stack))
        return self.dropout(self.position(x))

    def step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        """Embed one new token per row [B, 1], each at its row's position `state.pos[b]`."""
        x = self.embed(tokens)
        if self.stack_proj is not None:
            window = torch.cat([state.caches["input"], x], dim=1)
            state.caches["input"] = window[:, 1:]
            x = self.stack_proj(window.flatten(1))[:, None]
        return self.dropout(self.position(x, state.pos))


def tail(x: torch.Tensor, n: int, dim: int = 1) -> torch.Tensor:
    """The last `n` entries of `x` along `dim`, zero-padded in front when there are fewer.

    This is the decoding buffer of anything that looks a fixed distance back (k-gram windows,
    causal convolutions): zeros stand for the positions before the start, as in training.
    """
    length = x.shape[dim]
    kept = x.narrow(dim, max(0, length - n), min(length, n))
    if length >= n:
        return kept
    shape = list(x.shape)
    shape[dim] = n - length
    return torch.cat([x.new_zeros(shape), kept], dim=dim)


def kgram_window(x: torch.Tensor, k: int) -> torch.Tensor:
    """Stack each position with its k-1 predecessors: [B, T, D] -> [B, T, k*D], oldest first.

    Positions before the start are zeros, so position t sees exactly tokens t-k+1..t (causal).
    """
    batch, length, dim = x.shape
    padded = F.pad(x, (0, 0, k - 1, 0))
    windows = padded.unfold(1, k, 1)  # [B, T, D, k]
    return windows.transpose(2, 3).reshape(batch, length, k * dim)
