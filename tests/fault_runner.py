"""`python tests/fault_runner.py FILE N pico-llm-args...`: run pico-llm and kill -9 it inside the N-th write of FILE.

The kill lands where a crash hurts most: inside `files.atomic_file`, after the data went into the
temporary file and before the rename (config.json, checkpoint.pt, model.safetensors, ...), or half-way through
appending a line to a log (metrics.jsonl, samples.txt). FILE `-` injects nothing (a plain run, for
kills sent from outside). Used by tests/test_faults.py.
"""

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from pico_llm import files

target, at = sys.argv[1], int(sys.argv[2])
writes = 0
torch.set_num_threads(int(os.environ.get("PICO_FAULT_THREADS", torch.get_num_threads())))


def _counts(path) -> bool:
    global writes
    if Path(path).name != target:
        return False
    writes += 1
    return writes == at


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


atomic_file = files.atomic_file


@contextmanager
def atomic_file_then_die(path, sync=True):
    with atomic_file(path, sync) as handle:
        yield handle
        if _counts(path):
            handle.flush()
            _die()


append_text = files.append_text


def append_half_then_die(path, text):
    if _counts(path):
        append_text(path, text[: len(text) // 2])
        _die()
    append_text(path, text)


files.atomic_file, files.append_text = atomic_file_then_die, append_half_then_die

from pico_llm.cli import main

sys.exit(main(sys.argv[3:]))
