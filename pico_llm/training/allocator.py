"""Keep freed memory in the process so that each training step stops re-faulting fresh pages.

glibc's malloc serves blocks over its mmap threshold (at most 32 MB) with a fresh `mmap` and gives
them back with `munmap` on free, and trims the heap top above 128 KB. A training step allocates and
frees the same activations and gradients every time, so every step the kernel hands out and zeroes
new pages: 370,000-510,000 minor page faults per forward and backward pass at nanoGPT's 10.65M
shape (batch 64, context 256). With mmap off and trimming out of reach, freed blocks stay in
malloc's free lists and the next step reuses them (about one fault a step): whole training steps
1.11-1.26x faster on a 2-core AVX2-only Zen 3 (BENCHMARKS.md).

The cost is that memory freed during a run is not returned to the system until the process ends,
and the peak resident size grows with malloc's fragmentation (+8% at that shape). It applies only
where the C library is glibc (Linux); elsewhere, or with PICO_LLM_SYSTEM_MALLOC=1, nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed blocks instead of unmapping them; True when it took effect."""
    if os.environ.get("PICO_LLM_SYSTEM_MALLOC") == "1" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
