"""Run a benchmark job in a process of its own, started in a fraction of a second.

Each model of a suite, and each run of an ablation, trains in a fresh process so that its peak
memory, threads and allocator state are its own. A spawned process re-imports torch (2–3 s on
2 cores), and its first optimizer imports torch's compiler front end (another 2 s, even when
nothing is compiled): about 5 s a job. Forking each job from a server process that imported all of
that once, before any thread pool or accelerator was started, gives the same isolation for 0.04 s.
Only on Linux: Windows has no fork server, and macOS's system frameworks (Metal, behind MPS) are
not safe to use in a forked process, which is why Python spawns there by default; both spawn.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")

PRELOAD = ["torch", "torch._dynamo", "matplotlib.pyplot", "pico_llm.training.launch"]


def job_context() -> multiprocessing.context.BaseContext:
    """A fork server with the heavy imports done on Linux, plain spawn elsewhere."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def run_isolated(job: Callable[..., T], *args) -> T:
    """`job(*args)` in a new process; its exceptions are raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=job_context()) as pool:
        return pool.submit(job, *args).result()
