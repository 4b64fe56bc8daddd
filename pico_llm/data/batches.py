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
    """Non-overlapping windows covering the split, in order; with `max_tokens`, about that many tokens of them,
    spread evenly over the whole split (the same ones at every eval).

    Spread, not the first `max_tokens`: the start of a split can be easier or harder than the rest (a 1M
    cnn_attention scored 2.20 bits/byte on the first 16K val bytes of Tiny Shakespeare and 2.40 on the
    whole, one step later), so a periodic eval on a prefix drifts away from the final one.
    """
    starts = np.arange(0, max(len(tokens) - 1 - context, 0) + 1, context)
    if max_tokens is not None and max_tokens < len(starts) * context:
        starts = starts[np.unique(np.linspace(0, len(starts) - 1, max(1, max_tokens // context)).round().astype(int))]
    for i in range(0, len(starts), batch_size):
        yield read_windows(tokens, starts[i : i + batch_size], context)
