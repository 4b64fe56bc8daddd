"""`pico-llm bench generate`: tokens/s of incremental decoding for one model shape or a trained run, and how
close it comes to the memory-bandwidth bound.

Decoding one token reads every weight once (a matrix-vector product per layer), so the fastest a
decoder can go is the bandwidth at which this machine reads that many bytes, divided by them. The
bandwidth is measured here, on a buffer of the weights' own size read again and again, as decoding
reads them (a 43 MB model stays in a large L3 cache: DRAM bandwidth would understate the bound).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import benchmark

from ..inference.generation import Sampling, stream_ids
from .timing import median_seconds


def weight_bytes(model: nn.Module) -> int:
    """Bytes a decoding step reads: every parameter and buffer, except the rows an untied input embedding
    does not look up (a tied one is read whole, as the output head)."""
    head_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    skipped = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding) and id(m.weight) not in head_weights}
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in skipped}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def read_bandwidth(nbytes: int, device: torch.device | str = "cpu") -> float:
    """Bytes/s at which this machine reads an `nbytes` buffer it has read before (median of a sum over it)."""
    buffer = torch.ones(max(nbytes // 4, 1 << 16), device=device)
    timer = benchmark.Timer(stmt="buffer.sum()", globals={"buffer": buffer}, num_threads=torch.get_num_threads())
    return buffer.numel() * 4 / timer.blocked_autorange(min_run_time=1.0).median


def bench_generate(model: torch.nn.Module, prompt_tokens: int, new_tokens: int, repeats: int = 3, seed: int = 0,
                   bound: bool = False) -> dict:
    """Time prefill of a random prompt + `new_tokens` sampled steps; median of `repeats` after a warm-up.

    With `bound`, also the measured read bandwidth and the share of the bandwidth bound reached.
    """
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randint(model.config.vocab_size, (prompt_tokens,), generator=generator).tolist()
    model.eval()

    def run() -> None:
        for _ in stream_ids(model, prompt, new_tokens, Sampling(seed=seed)):
            pass

    seconds, runs = median_seconds(run, repeats)
    result = {
        "model": model.name,
        "params": model.num_params(),
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "tokens_per_second": round(new_tokens / seconds, 2),
        "ms_per_token": round(1000 * seconds / new_tokens, 3),
        "seconds_runs": [round(t, 4) for t in runs],
        "threads": torch.get_num_threads(),
    }
    if bound:
        nbytes = weight_bytes(model)
        bandwidth = read_bandwidth(nbytes, next(model.parameters(), torch.empty(0)).device)
        result.update(weight_mb=round(nbytes / 1e6, 2), read_gb_per_second=round(bandwidth / 1e9, 2),
                      bound_tokens_per_second=round(bandwidth / nbytes, 1),
                      share_of_bound=round(result["tokens_per_second"] * nbytes / bandwidth, 3))
    return result
