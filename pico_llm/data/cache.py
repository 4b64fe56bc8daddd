"""Corpus loading, the token cache, the train/val split and batch sampling.

Text is tokenized once, in parallel worker processes, and stored as a numpy memmap named by the
text's key (the content hash for files) and the tokenizer's fingerprint, so a second run on the same
data starts at once. The text is streamed in blocks and batches are read straight from disk, so a
corpus larger than memory trains in flat memory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PicoError, warn
from ..files import atomic_file, cache_root, digest
from .corpora import Files, HFDataset, Parts, char_start, open_text
from .shards import default_workers, token_dtype, write_token_files
from .tokenizers import ByteTokenizer, Tokenizer, tokenizer_from_state, train_tokenizer

VAL_FRACTION = 0.1
TEXT_SNIFF_BYTES = 1 << 16
TOKENIZER_SAMPLE_BYTES = 32 << 20


def read_corpus(path: str | Path) -> bytes:
    """Raw bytes of a text named as `--data` names it (a folder's .txt files newline-joined), in memory."""
    return b"".join(block for _, block in open_text(str(path)).whole().blocks())


def cache_dir() -> Path:
    """Where token memmaps live: $PICO_LLM_CACHE/tokens, else ~/.cache/pico_llm/tokens."""
    return cache_root() / "tokens"


def token_files(parts: Parts, tokenizer: Tokenizer, workers: int | None = None) -> list[np.memmap]:
    """Each part's token ids as a read-only memmap, tokenizing (in `workers` processes) only what is not cached."""
    dtype, fingerprint = token_dtype(tokenizer.vocab_size), tokenizer.fingerprint()
    paths = [cache_dir() / f"{key}-{fingerprint}.{dtype.name}" for key in parts.keys]
    write_token_files(parts.blocks(), tokenizer, paths, workers or default_workers())
    for path in paths:
        if path.stat().st_size == 0:
            raise PicoError("the data tokenized to zero tokens; give it some text to train on")
    return [np.memmap(path, dtype=dtype, mode="r") for path in paths]


def tokenize_cached(data: bytes, tokenizer: Tokenizer) -> np.memmap:
    """Token ids of `data` as a read-only memmap, computing and caching them on first use."""
    return token_files(Parts([digest([data])[0]], lambda: iter([(0, data)])), tokenizer, 1)[0]


def load_tokens(data: str | Path, tokenizer: Tokenizer, text_field: str = "text", workers: int | None = None) -> np.memmap:
    """All of a text's token ids (no split), cached as for training: what `pico-llm eval` reads."""
    return token_files(open_text(str(data), text_field).whole(), tokenizer, workers)[0]


def split_bytes(data: bytes, val_fraction: float = VAL_FRACTION) -> tuple[bytes, bytes]:
    """Deterministic split as nanoGPT does it: the last `val_fraction` of the bytes is val.

    The cut moves back to the start of a UTF-8 character so neither side holds half a character.
    """
    cut = char_start(data, int(len(data) * (1 - val_fraction)))
    return data[:cut], data[cut:]


def cached_tokenizer(name: str, parts: Parts, vocab_size: int) -> Tokenizer:
    """The named tokenizer; char and BPE are trained once on the text's first TOKENIZER_SAMPLE_BYTES and cached.

    The cache (keyed by the text's keys) lets a streamed corpus skip the stream once its tokens are
    cached, and gives every process of a distributed run the same tokenizer.
    """
    if name not in ("char", "bpe"):
        return train_tokenizer(name, b"", vocab_size)  # byte needs no text; an unknown name is reported
    blob = json.dumps([name, vocab_size, parts.keys]).encode()
    path = cache_root() / "tokenizers" / f"{name}-{hashlib.sha256(blob).hexdigest()[:24]}.json"
    if path.is_file():
        return tokenizer_from_state(json.loads(path.read_text()))
    sample = bytearray()
    for _, block in parts.blocks():
        sample += block
        if len(sample) >= TOKENIZER_SAMPLE_BYTES:
            break
    tokenizer = train_tokenizer(name, bytes(sample[: char_start(sample, TOKENIZER_SAMPLE_BYTES)]), vocab_size)
    with atomic_file(path) as handle:
        handle.write(json.dumps(tokenizer.state()).encode())
    return tokenizer


def load_corpus(
    data_path: str | Path,
    tokenizer: Tokenizer | str,
    vocab_size: int = 1024,
    val_data_path: str | Path | None = None,
    text_field: str = "text",
    workers: int | None = None,
) -> Corpus:
    """Split, tokenize (streamed, in `workers` processes) and map a corpus; a tokenizer given by name is trained on it."""
    text = open_text(str(data_path), text_field)
    if tokenizer == "byte" or isinstance(tokenizer, ByteTokenizer):
        warn_if_not_text(text)
    if val_data_path is None:
        parts = text.split(VAL_FRACTION)
    else:
        parts = text.whole().then(open_text(str(val_data_path), text_field).whole())
    if isinstance(tokenizer, str):
        tokenizer = cached_tokenizer(tokenizer, parts, vocab_size)
    train, val = token_files(parts, tokenizer, workers)
    return Corpus(train, val, tokenizer, tuple(parts.keys))


def warn_if_not_text(text: Files | HFDataset) -> None:
    """Warn when a file is mostly not UTF-8 text (binary, UTF-16): the byte tokenizer would train on it silently."""
    if not isinstance(text, Files):
        return  # a dataset's text fields are strings, hence UTF-8
    sample = b"".join(text.read(0, min(text.size, TEXT_SNIFF_BYTES)))
    decoded = sample.decode("utf-8", errors="replace")
    odd = sum(1 for c in decoded if c == "\ufffd" or (c < " " and c not in "\t\n\r\f"))
    if decoded and odd / len(decoded) > 0.1:
        warn(f"{text.label} is mostly not UTF-8 text ({odd / len(decoded):.0%} of its first {len(sample):,} bytes are "
             "invalid or control bytes, e.g. a binary or UTF-16 file); training on its bytes anyway")


@dataclass
class Corpus:
    """Train and val token streams for one tokenizer."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer
    keys: tuple[str, ...] = ()  # the content key of each part: resume checks that the data did not change

    def check_context(self, context: int) -> None:
        if context <= 0:
            raise PicoError(f"`context` must be a positive number of tokens, got {context}")
        shortest = min(len(self.train), len(self.val))
        if context >= shortest:
            raise PicoError(
                f"`context` {context} is too long for this data (the {'val' if len(self.val) == shortest else 'train'} "
                f"split has {shortest} tokens); use a `context` below {shortest} or more data"
            )
