"""`pico-llm bench generate`: tokens/s of incremental decoding for one model shape or a trained run."""

from __future__ import annotations

import torch

from ..inference.generation import Sampling, stream_ids
from .timing import median_seconds


def bench_generate(model: torch.nn.Module, prompt_tokens: int, new_tokens: int, repeats: int = 3, seed: int = 0) -> dict:
    """Time prefill of a random prompt + `new_tokens` sampled steps; median of `repeats` after a warm-up."""
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randint(model.config.vocab_size, (prompt_tokens,), generator=generator).tolist()
    model.eval()

    def run() -> None:
        for _ in stream_ids(model, prompt, new_tokens, Sampling(seed=seed)):
            pass

    seconds, runs = median_seconds(run, repeats)
    return {
        "model": model.name,
        "params": model.num_params(),
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "tokens_per_second": round(new_tokens / seconds, 2),
        "ms_per_token": round(1000 * seconds / new_tokens, 3),
        "seconds_runs": [round(t, 4) for t in runs],
        "threads": torch.get_num_threads(),
    }
