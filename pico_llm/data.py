"""Corpus loading, the token cache, the train/val split and batch sampling.

Text is tokenized once and stored as a numpy memmap named by the content hash and the tokenizer's
fingerprint, so a second run on the same data starts instantly and batches are read straight from
disk without growing memory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import PicoError
from .tokenizers import Tokenizer, train_tokenizer

VAL_FRACTION = 0.1


def read_corpus(path: str | Path) -> bytes:
    """Raw bytes of a text file, or of every `.txt` file in a folder (sorted, newline-joined)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise PicoError(f"folder {path} has no .txt files; point --data at a text file or a folder of .txt files")
        data = b"\n".join(f.read_bytes() for f in files)
    elif path.is_file():
        data = path.read_bytes()
    else:
        raise PicoError(f"data file {path} does not exist; pass --data PATH to a text file or folder")
    if not data.strip():
        raise PicoError(f"data {path} is empty; give it some text to train on")
    return data


def cache_dir() -> Path:
    """Where token memmaps live: $PICO_LLM_CACHE, else ~/.cache/pico_llm/tokens."""
    root = os.environ.get("PICO_LLM_CACHE") or Path.home() / ".cache" / "pico_llm"
    return Path(root, "tokens")


def tokenize_cached(data: bytes, tokenizer: Tokenizer) -> np.memmap:
    """Token ids of `data` as a read-only memmap, computing and caching them on first use."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    key = f"{hashlib.sha256(data).hexdigest()[:24]}-{tokenizer.fingerprint()}"
    path = cache_dir() / f"{key}.{np.dtype(dtype).name}"
    if not path.exists():
        ids = tokenizer.encode_bytes(data).astype(dtype)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        ids.tofile(tmp)
        os.replace(tmp, path)
    if path.stat().st_size == 0:
        raise PicoError("the data tokenized to zero tokens; give it some text to train on")
    return np.memmap(path, dtype=dtype, mode="r")


def split_bytes(data: bytes, val_fraction: float = VAL_FRACTION) -> tuple[bytes, bytes]:
    """Deterministic split as nanoGPT does it: the last `val_fraction` of the bytes is val.

    The cut moves back to the start of a UTF-8 character so neither side holds half a character.
    """
    cut = int(len(data) * (1 - val_fraction))
    while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return data[:cut], data[cut:]


def load_corpus(
    data_path: str | Path,
    tokenizer: Tokenizer | str,
    vocab_size: int = 1024,
    val_data_path: str | Path | None = None,
) -> Corpus:
    """Read, split and tokenize a corpus; a tokenizer given by name is trained on the whole text."""
    data = read_corpus(data_path)
    if val_data_path is None:
        train_bytes, val_bytes = split_bytes(data)
    else:
        train_bytes, val_bytes = data, read_corpus(val_data_path)
    if isinstance(tokenizer, str):
        tokenizer = train_tokenizer(tokenizer, train_bytes + val_bytes, vocab_size)
    return Corpus(tokenize_cached(train_bytes, tokenizer), tokenize_cached(val_bytes, tokenizer), tokenizer)


@dataclass
class Corpus:
    """Train and val token streams for one tokenizer."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer

    def check_context(self, context: int) -> None:
        if context <= 0:
            raise PicoError(f"--context must be a positive number of tokens, got {context}")
        shortest = min(len(self.train), len(self.val))
        if context >= shortest:
            raise PicoError(
                f"--context {context} is too long for this data (the {'val' if len(self.val) == shortest else 'train'} "
                f"split has {shortest} tokens); use --context below {shortest} or more data"
            )


def sample_batch(
    tokens: np.ndarray, context: int, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of `context + 1` tokens: inputs and next-token targets, shape [B, context]."""
    starts = torch.randint(len(tokens) - context, (batch_size,), generator=generator).numpy()
    window = np.asarray(tokens[starts[:, None] + np.arange(context + 1)], dtype=np.int64)
    window = torch.from_numpy(window)
    return window[:, :-1], window[:, 1:]


def eval_batches(tokens: np.ndarray, context: int, batch_size: int, max_tokens: int | None = None):
    """Consecutive non-overlapping windows covering the split (or its first `max_tokens`), in order."""
    usable = len(tokens) - 1 if max_tokens is None else min(len(tokens) - 1, max_tokens)
    starts = np.arange(0, max(usable - context, 0) + 1, context)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        window = torch.from_numpy(np.asarray(tokens[chunk[:, None] + np.arange(context + 1)], dtype=np.int64))
        yield window[:, :-1], window[:, 1:]
