"""Where training text comes from, read as a stream of blocks and never whole.

`--data` names a file, a folder (its .txt files), a glob, a named corpus that is downloaded once
into the cache (`tinyshakespeare`, `names`), or a Hugging Face dataset (`hf:NAME[:config][:split]`,
streamed through the optional `datasets` package). Each becomes `Parts`: one pass over the text,
tagged train (0) or val (1), plus a cache key per part, so the token cache can be checked without
tokenizing and a corpus larger than memory is only ever held a block at a time.

This module does not import torch: parallel tokenization workers import it and start fast.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from ..errors import PicoError
from ..files import atomic_file, cache_root, digest

BLOCK_BYTES = 1 << 20
DOC_SEPARATOR = b"\n"
MIRROR_ENV = "PICO_LLM_CORPUS_MIRROR"


@dataclass(frozen=True)
class NamedCorpus:
    url: str
    sha256: str


NAMED_CORPORA = {
    "tinyshakespeare": NamedCorpus(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
    "names": NamedCorpus(
        "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt",
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d",
    ),
}


def char_start(data: bytes | bytearray, cut: int) -> int:
    """`cut` moved back to the start of the UTF-8 character it falls in, so no side holds half of it."""
    while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut


@dataclass
class Parts:
    """One pass over a text cut into parts (train, val): a cache key per part, and (part, bytes) blocks in order."""

    keys: list[str]
    blocks: Callable[[], Iterator[tuple[int, bytes]]]

    def then(self, other: Parts) -> Parts:
        """These parts followed by `other`'s, numbered after them (a training text and a separate val text)."""
        offset = len(self.keys)
        return Parts(self.keys + other.keys, lambda: chain(self.blocks(), ((offset + i, b) for i, b in other.blocks())))


class Files:
    """Files read as one text, newline-joined in order, a block at a time."""

    def __init__(self, paths: list[Path], label: str):
        self.paths, self.label = paths, label
        self.sizes = [path.stat().st_size for path in paths]
        self.size = sum(self.sizes) + len(paths) - 1

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes in [start, end) of the joined text, in blocks of at most BLOCK_BYTES."""
        end = self.size if end is None else end
        offset = 0
        for index, (path, size) in enumerate(zip(self.paths, self.sizes)):
            if index and start <= offset < end:
                yield DOC_SEPARATOR
            offset += bool(index)
            low, high = max(start, offset), min(end, offset + size)
            if low < high:
                yield from _read_range(path, low - offset, high - low)
            offset += size

    def _keys(self, *ranges: tuple[int, int]) -> list[str]:
        keys = [digest(self.read(*span)) for span in ranges]
        if not any(has_text for _, has_text in keys):
            raise PicoError(f"data {self.label} is empty; give it some text to train on")
        return [key for key, _ in keys]

    def whole(self) -> Parts:
        return Parts(self._keys((0, self.size)), lambda: ((0, block) for block in self.read()))

    def split(self, val_fraction: float) -> Parts:
        """Train is the first 1 - val_fraction of the bytes, val the rest (nanoGPT's split), cut between characters."""
        cut = int(self.size * (1 - val_fraction))
        window = max(cut - 3, 0)
        cut = window + char_start(b"".join(self.read(window, cut + 1)), cut - window)
        keys = self._keys((0, cut), (cut, self.size))
        return Parts(keys, lambda: chain(((0, b) for b in self.read(0, cut)), ((1, b) for b in self.read(cut))))


def _read_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        while length > 0:
            block = handle.read(min(BLOCK_BYTES, length))
            if not block:
                raise PicoError(f"{path} shrank while being read; run again once it stops changing")
            length -= len(block)
            yield block


@dataclass
class HFDataset:
    """A Hugging Face dataset, streamed through `datasets` (an optional extra), one text field per document."""

    name: str
    config: str | None
    dataset_split: str
    field: str

    @classmethod
    def parse(cls, spec: str, field: str) -> HFDataset:
        """`NAME[:config][:split]` (the part after `hf:`); the split defaults to train."""
        name, config, split, *rest = spec.split(":") + ["", ""]
        if not name or any(rest):
            raise PicoError(f"bad dataset hf:{spec}; write hf:NAME, hf:NAME:CONFIG or hf:NAME:CONFIG:SPLIT")
        return cls(name, config or None, split or "train", field)

    def __str__(self) -> str:
        return f"hf:{self.name}:{self.config or ''}:{self.dataset_split}"

    def _key(self, part: str) -> str:
        """The dataset's identity (and, for a local folder, its files' sizes and times): streams cannot be hashed first."""
        local = Path(self.name)
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else []
        stamp = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        blob = json.dumps([self.name, self.config, self.dataset_split, self.field, part, stamp]).encode()
        return "hf-" + hashlib.sha256(blob).hexdigest()[:21]

    def documents(self) -> Iterator[bytes]:
        """Each record's text field as UTF-8, newline-terminated, in the dataset's order."""
        datasets = _import_datasets()
        try:
            for record in datasets.load_dataset(self.name, self.config, split=self.dataset_split, streaming=True):
                if self.field not in record:
                    raise PicoError(
                        f"{self} has no field {self.field!r}; its fields are {', '.join(record)}: set `text_field` to the field that holds the text"
                    )
                yield str(record[self.field]).encode("utf-8") + DOC_SEPARATOR
        except PicoError:
            raise
        except Exception as err:  # the hub, the network, the files: all the user can do is read the reason
            raise PicoError(self._unreadable(err)) from None

    def _unreadable(self, err: Exception) -> str:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if Path(self.name).exists():
            return f"cannot read the dataset folder {self.name} ({reason})"
        return (
            f"{self} is not in pico-llm's cache and cannot be downloaded ({reason}); check the name, and connect to "
            "the internet once: its tokens are then cached and later runs need no network"
        )

    def whole(self) -> Parts:
        return Parts([self._key("all")], lambda: ((0, doc) for doc in self.documents()))

    def split(self, val_fraction: float) -> Parts:
        """Every document whose index crosses a multiple of 1/val_fraction goes to val (one in ten), in one pass."""

        def blocks():
            for index, doc in enumerate(self.documents()):
                yield int(int((index + 1) * val_fraction) > int(index * val_fraction)), doc

        return Parts([self._key("train"), self._key("val")], blocks)


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise PicoError("hf: data needs the 'datasets' package: pip install 'pico-llm[hf]'") from None
    return datasets


def download(name: str) -> Path:
    """A named corpus from the cache, downloading it (checksum verified) the first time.

    The URL is the corpus's own, or $PICO_LLM_CORPUS_MIRROR/<name>.txt when that is set (a local
    mirror, a proxy, a test server).
    """
    corpus = NAMED_CORPORA[name]
    path = cache_root() / "corpora" / f"{name}.txt"
    if path.is_file():
        return path
    mirror = os.environ.get(MIRROR_ENV)
    url = f"{mirror.rstrip('/')}/{name}.txt" if mirror else corpus.url
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_file(path) as handle:
            hasher = hashlib.sha256()
            while block := response.read(BLOCK_BYTES):
                hasher.update(block)
                handle.write(block)
            if hasher.hexdigest() != corpus.sha256:
                raise PicoError(
                    f"the download of {name} from {url} has sha256 {hasher.hexdigest()}, expected {corpus.sha256}; "
                    "nothing was cached: try again later, or point `data` at a copy you trust"
                )
    except (OSError, http.client.HTTPException) as err:
        raise PicoError(
            f"cannot download {name} from {url} ({err}); connect to the internet once (it is then kept in "
            f"{path.parent}), or point `data` at a local copy"
        ) from None
    return path


def open_text(spec: str, text_field: str = "text") -> Files | HFDataset:
    """The text `--data` names: a file, a folder of .txt files, a glob, a named corpus, or hf:NAME[:config][:split]."""
    if spec.startswith("hf:"):
        return HFDataset.parse(spec[3:], text_field)
    path = Path(spec)
    if not path.exists() and spec in NAMED_CORPORA:
        path = download(spec)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise PicoError(f"folder {path} has no .txt files; point `data` at a text file or a folder of .txt files")
    elif path.is_file():
        files = [path]
    elif any(c in spec for c in "*?["):
        files = sorted(p for p in map(Path, glob.glob(spec, recursive=True)) if p.is_file())
        if not files:
            raise PicoError(f"no files match {spec}; check the pattern (quote it so the shell leaves it alone)")
    else:
        raise PicoError(
            f"data file {path} does not exist; point `data` at a text file, a folder or a glob, "
            f"a named corpus ({', '.join(NAMED_CORPORA)}) or hf:NAME"
        )
    return Files(files, spec)
