"""Evaluation metrics: loss, perplexity, bits per byte, accuracy.

Bits per byte is the number to compare across tokenizers: the total cross-entropy of the val tokens
in bits divided by the number of UTF-8 bytes those tokens decode to. A tokenizer with longer tokens
has a higher loss per token but covers more bytes with each one; per byte, the two are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batches import eval_batches


def summarize(total_nats: float, tokens: int, correct: int, total_bytes: int) -> dict:
    """Turn summed statistics into the reported metrics."""
    loss = total_nats / tokens
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_byte": total_nats / math.log(2) / total_bytes,
        "accuracy": correct / tokens,
        "tokens": tokens,
    }


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    tokens: np.ndarray,
    byte_lengths: np.ndarray,
    context: int,
    batch_size: int,
    device: torch.device,
    max_tokens: int | None = None,
    autocast=nullcontext,
    should_stop: Callable[[], bool] | None = None,
) -> dict | None:
    """Metrics over consecutive windows of `tokens` (all of them, or the first `max_tokens`).

    `should_stop`, asked between batches, cuts a long evaluation short: the result is then None.
    """
    was_training = model.training
    model.eval()
    lengths = torch.as_tensor(byte_lengths, device=device)
    total_nats, count, correct, total_bytes = 0.0, 0, 0, 0
    for inputs, targets in eval_batches(tokens, context, batch_size, max_tokens):
        if should_stop is not None and should_stop():
            model.train(was_training)
            return None
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast():
            logits = model(inputs)
        logits = logits.float()
        total_nats += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        correct += (logits.argmax(-1) == targets).sum().item()
        count += targets.numel()
        total_bytes += lengths[targets].sum().item()
    model.train(was_training)
    return summarize(total_nats, count, correct, total_bytes)
