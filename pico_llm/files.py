"""Small file helpers shared by every stage: the cache folder, atomic writes, content digests.

Every file pico-llm writes (token cache, tokenizers, run-folder files, checkpoints) goes through
`atomic_file`: it is written under a temporary name in the same folder, flushed to disk and renamed
over the target, so a reader (or a process killed half-way) sees the old file or the new one, never
a torn one. A temporary file left by a killed writer is swept by `sweep_temp_files`. A full disk or
a read-only folder becomes one `PicoError` line saying which file could not be written.

This module does not import torch: tokenization workers import it and start fast.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from .errors import PicoError

TEMP_SUFFIX = ".tmp"
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
               errno.EEXIST, errno.EISDIR, errno.EIO}


def cache_root() -> Path:
    """$PICO_LLM_CACHE, else ~/.cache/pico_llm: token files, trained tokenizers, downloaded corpora."""
    return Path(os.environ.get("PICO_LLM_CACHE") or Path.home() / ".cache" / "pico_llm")


def write_failure(path: Path, err: OSError) -> PicoError:
    """The one-line report of a file that could not be written, with what to do about it."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "the disk is full; free some space and run again (no file was left half-written)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "the folder is not writable; choose a folder you can write to"
    elif err.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        advice = "a file stands where a folder is needed; choose another path"
    else:
        advice = err.strerror or type(err).__name__
    return PicoError(f"cannot write {path}: {advice}")


@contextmanager
def atomic_file(path: str | Path, sync: bool = True):
    """A binary file that appears at `path` only if the block completes, so no reader sees half of one.

    The temporary name is unique across processes and machines (a shared cache may be written by
    several). `sync` flushes the data to disk before the rename, so a power cut cannot leave an
    empty file under the final name either.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in DISK_ERRORS:  # e.g. a network error while the block downloads into the file
            raise
        raise write_failure(path, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text.encode("utf-8"))


def write_json(path: str | Path, content) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def append_text(path: str | Path, text: str) -> None:
    """Append to a log file (metrics, samples); a line torn by a kill is skipped by its readers."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise write_failure(Path(path), err) from None


def sweep_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in `folder`; returns what was deleted.

    Only call this while holding the folder's lock: a live writer's temporary file looks the same.
    """
    swept = [p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in swept:
        path.unlink(missing_ok=True)
    return swept


def digest(blocks: Iterable[bytes]) -> tuple[str, bool]:
    """The content key of a text (the first 24 hex digits of its sha256) and whether it has non-blank bytes."""
    hasher, has_text = hashlib.sha256(), False
    for block in blocks:
        hasher.update(block)
        has_text = has_text or bool(block.strip())
    return hasher.hexdigest()[:24], has_text
