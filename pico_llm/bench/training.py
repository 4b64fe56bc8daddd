"""`pico-llm bench train`: steady-state training throughput and MFU of one model shape.

MFU (model FLOPs utilisation) = the model's training FLOPs per token × tokens/s, divided by the peak
matmul FLOP/s measured on this machine, in the dtype training runs in.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import numpy as np
import torch
from torch.utils import benchmark

from ..config import TrainConfig
from ..data.cache import Corpus
from ..data.tokenizers import ByteTokenizer
from ..training.trainer import Trainer


def matmul_peak_flops(dtype: torch.dtype = torch.float32, max_size: int = 2048, device: str = "cpu") -> float:
    """FLOP/s of a square matmul (median of torch.utils.benchmark's blocked autorange).

    The size doubles from 256 up to `max_size` while one product takes under 0.1 s, so a dtype
    this machine only emulates (bfloat16 without AVX512-BF16: about 0.3 GFLOP/s, a minute for one
    2048² product) is measured in seconds too.
    """
    size = 256
    while size < max_size:
        a = torch.randn(size, size, device=device).to(dtype)
        start = time.perf_counter()
        torch.matmul(a, a)
        if time.perf_counter() - start > 0.1 / 8:  # the next size costs 8x more
            break
        size *= 2
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    timer = benchmark.Timer(stmt="torch.matmul(a, b)", globals={"torch": torch, "a": a, "b": b},
                            num_threads=torch.get_num_threads())
    return 2 * size**3 / timer.blocked_autorange(min_run_time=1.0).median


def synthetic_corpus(vocab_size: int, tokens: int = 1 << 20, seed: int = 0) -> Corpus:
    """Random token streams: throughput does not depend on what the tokens say."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, tokens, dtype=np.int64).astype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
    tokenizer = ByteTokenizer()
    tokenizer.vocab_size = vocab_size
    return Corpus(ids, ids[: tokens // 10], tokenizer)


def bench_train(model: torch.nn.Module, config: TrainConfig, steps: int, warmup: int = 3) -> dict:
    """Median step time of `steps` training steps after `warmup` untimed ones."""
    config = replace(config, max_steps=warmup + steps, warmup_steps=0)
    trainer = Trainer(model, synthetic_corpus(model.config.vocab_size), config)
    for _ in range(warmup):
        trainer.train_step()
    step_times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step().item()
        step_times.append(time.perf_counter() - start)
    seconds = statistics.median(step_times)
    tokens_per_second = trainer.tokens_per_step / seconds
    peak = matmul_peak_flops(trainer.dtype if trainer.dtype != torch.float16 else torch.float32, device=trainer.device.type)
    achieved = model.flops_per_token() * tokens_per_second
    return {
        "model": model.name,
        "params": model.num_params(),
        "context": model.config.context,
        "batch_size": config.batch_size,
        "dtype": str(trainer.dtype).removeprefix("torch."),
        "tokens_per_second": round(tokens_per_second, 1),
        "ms_per_step": round(1000 * seconds, 2),
        "flops_per_token": model.flops_per_token(),
        "achieved_gflops": round(achieved / 1e9, 2),
        "peak_gflops": round(peak / 1e9, 2),
        "mfu": round(achieved / peak, 4),
        "threads": torch.get_num_threads(),
    }
