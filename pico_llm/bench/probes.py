"""Long-range probes, generated on the fly: where CNNs, MLPs, RNNs and attention really differ.

- Multi-query associative recall (MQAR, Arora et al. 2023, "Zoology", arXiv 2312.04927): key-value
  pairs first, then, among filler tokens, the keys again; the model must answer each with its value.
  Accuracy is reported by distance between the pair and the query.
- Copying: a random segment, a separator, then the same segment again (teacher-forced); predicting
  each copied token means looking back exactly `length` positions.

Both need content-based look-up over a distance: a k-gram MLP sees only k tokens, a CNN its
receptive field, an LSTM what it could compress, attention everything in its context.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

KEYS, VALUES, FILLER = 32, 32, 16
SEPARATOR = KEYS + VALUES + FILLER
VOCAB = SEPARATOR + 1
IGNORE = -100
RECALL_BUCKETS = (8, 16, 32, 64, 128)
COPY_LENGTHS = (4, 8, 16, 32, 60)
EVAL_ROWS = 32  # sequences a forward pass scores at once: all 256 at once took mamba 10.2 s against 6.5 (its states outgrow the cache)


def _filler(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return KEYS + VALUES + torch.randint(FILLER, shape, generator=generator)


def associative_recall(batch: int, length: int, pairs: int, generator: torch.Generator):
    """Inputs, targets (IGNORE except at answers) and query distances (-1 except at answers), [B, T]."""
    inputs = _filler((batch, length), generator)
    targets = torch.full((batch, length), IGNORE)
    distances = torch.full((batch, length), -1)
    for row in range(batch):
        keys = torch.randperm(KEYS, generator=generator)[:pairs]
        values = KEYS + torch.randint(VALUES, (pairs,), generator=generator)
        inputs[row, 0 : 2 * pairs : 2], inputs[row, 1 : 2 * pairs : 2] = keys, values
        slots = 2 * pairs + 2 * torch.randperm((length - 2 * pairs) // 2, generator=generator)[:pairs]
        for i, slot in enumerate(slots.tolist()):
            inputs[row, slot], inputs[row, slot + 1] = keys[i], values[i]
            targets[row, slot] = values[i]
            distances[row, slot] = slot - (2 * i + 1)
    return inputs, targets, distances


def copying(batch: int, length: int, generator: torch.Generator):
    """A segment, a separator, the segment again; each row's segment length is drawn from the
    COPY_LENGTHS that fit in `length`."""
    inputs = _filler((batch, length), generator)
    targets = torch.full((batch, length), IGNORE)
    distances = torch.full((batch, length), -1)
    spans = [span for span in COPY_LENGTHS if 2 * span + 1 <= length]
    for row in range(batch):
        span = spans[int(torch.randint(len(spans), (1,), generator=generator))]
        segment = KEYS + torch.randint(VALUES, (span,), generator=generator)
        inputs[row, :span], inputs[row, span] = segment, SEPARATOR
        inputs[row, span + 1 : 2 * span + 1] = segment
        targets[row, span : 2 * span] = segment
        distances[row, span : 2 * span] = span
    return inputs, targets, distances


def probe_batch(batch: int, length: int, generator: torch.Generator):
    """Half recall, half copying."""
    recall = associative_recall(batch // 2, length, pairs=8, generator=generator)
    copy = copying(batch - batch // 2, length, generator)
    return tuple(torch.cat(parts) for parts in zip(recall, copy))


def train_on_probes(model, seconds: float, length: int = 128, batch: int = 32, lr: float = 3e-3, seed: int = 0) -> int:
    """Train `model` (vocab VOCAB) on probe batches for a wall-clock budget; returns steps taken."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        inputs, targets, _ = probe_batch(batch, length, generator)
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        steps += 1
    return steps


@torch.no_grad()
def probe_accuracy(model, length: int = 128, samples: int = 256, seed: int = 1) -> dict:
    """Accuracy by distance: {"recall": {"≤8": acc, ...}, "copy": {"4": acc, ...}} on fresh sequences."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    recall = associative_recall(samples, length, pairs=8, generator=generator)
    copy = copying(samples, length, generator)
    return {"recall": _by_distance(model, *recall, RECALL_BUCKETS), "copy": _by_distance(model, *copy, COPY_LENGTHS, exact=True)}


def _by_distance(model, inputs, targets, distances, edges, exact: bool = False) -> dict:
    with torch.no_grad():
        predicted = torch.cat([model(rows).argmax(-1) for rows in inputs.split(EVAL_ROWS)])
    correct = predicted == targets
    result, low = {}, 0
    for edge in edges:
        mask = distances == edge if exact else (distances > low) & (distances <= edge)
        label = str(edge) if exact else f"{low + 1}-{edge}"
        result[label] = round(correct[mask].float().mean().item(), 4) if mask.any() else None
        low = edge
    return result
