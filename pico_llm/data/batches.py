"""Batches: random training windows and consecutive eval windows, read straight from a token memmap."""

from __future__ import annotations

import numpy as np
import torch


def sample_starts(tokens: np.ndarray, context: int, count: int, generator: torch.Generator) -> np.ndarray:
    """Random start positions of `count` training windows of `context + 1` tokens."""
    return torch.randint(len(tokens) - context, (count,), generator=generator).numpy()


def read_windows(tokens: np.ndarray, starts: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows at `starts`: inputs and next-token targets, shape [len(starts), context].

    A memmap is mapped afresh for each read and unmapped after it (nanoGPT's fix), so the pages a
    run touches leave its resident memory instead of accumulating up to the corpus's size.
    """
    if isinstance(tokens, np.memmap):
        tokens = np.memmap(tokens.filename, dtype=tokens.dtype, mode="r", offset=tokens.offset, shape=tokens.shape)
    window = torch.from_numpy(np.asarray(tokens[starts[:, None] + np.arange(context + 1)], dtype=np.int64))
    return window[:, :-1], window[:, 1:]


def sample_batch(
    tokens: np.ndarray, context: int, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of `context + 1` tokens: inputs and next-token targets, shape [B, context]."""
    return read_windows(tokens, sample_starts(tokens, context, batch_size, generator), context)


def eval_batches(tokens: np.ndarray, context: int, batch_size: int, max_tokens: int | None = None):
    """Consecutive non-overlapping windows covering the split (or its first `max_tokens`), in order."""
    usable = len(tokens) - 1 if max_tokens is None else min(len(tokens) - 1, max_tokens)
    starts = np.arange(0, max(usable - context, 0) + 1, context)
    for i in range(0, len(starts), batch_size):
        yield read_windows(tokens, starts[i : i + batch_size], context)
