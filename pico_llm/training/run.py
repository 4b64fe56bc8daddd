"""The run folder: what a training run leaves behind, written so that no crash or signal loses work.

    RUN_DIR/config.json      the fully resolved config (train, model, runtime, data keys)
            metrics.jsonl    one JSON object per log/eval event
            checkpoint.pt    latest state (model, optimizer, RNG, step) for resume
            model.safetensors  weights with the best val loss (with config.json and tokenizer.json:
                             a pretrained folder, all that generate, eval and export need)
            tokenizer.json   the tokenizer
            curves.png       loss and perplexity against steps and wall time
            samples.txt      text generated from a fixed prompt at each eval
            summary.json     final metrics
            .lock            held by the process training into the folder

One writer at a time: the trainer holds an exclusive lock (`fcntl.flock`) on `.lock` while it runs,
and a second one is told which process holds it. Every file is replaced atomically (files.py);
temporary files left by a killed writer are swept when the folder is opened again, and a resumed
run drops the metrics and samples logged after its checkpoint, so no step appears twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data.tokenizers import Tokenizer
from ..errors import PicoError, warn
from ..files import append_text, sweep_temp_files, write_json, write_text
from ..inference.generation import encode_prompt, generate
from ..models.registry import model_spec
from ..weights import WEIGHTS_FILE
from .plots import plot_curves
from .runtime import Runtime
from .trainer import Callback, Trainer

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer at a time is then up to the user
    fcntl = None

SAMPLE_SEED = 1234
LOCK_FILE = ".lock"
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", WEIGHTS_FILE, "best.pt", "tokenizer.json", "curves.png",
             "samples.txt", "summary.json")  # best.pt: the weights file of run folders made before safetensors
SAMPLE_HEADER = re.compile(r"^=== step (\d+) ", re.MULTILINE)


def default_run_dir(model_name: str) -> Path:
    return Path("experiments/results") / f"{time.strftime('%Y%m%d-%H%M%S')}-{model_name}"


class RunLock:
    """An exclusive lock on a run folder, held from `acquire` until `release` (or the process's end)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self.handle = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        handle = open(self.path, "a+")
        self._lock_or_refuse(handle, fcntl.LOCK_EX, self.path.parent)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle

    @classmethod
    def check_free(cls, folder: Path) -> None:
        """Fail now, with the holder's PID, if another process trains into `folder` (before any slow start-up).

        The probe takes a shared lock, which only a training's exclusive one refuses: the ranks of a
        torchrun job resuming a run all probe it at once, and exclusive probes refused each other.
        """
        if fcntl is None or not (folder / LOCK_FILE).exists():
            return
        with open(folder / LOCK_FILE) as handle:
            cls._lock_or_refuse(handle, fcntl.LOCK_SH, folder)

    @staticmethod
    def _lock_or_refuse(handle, mode: int, folder: Path) -> None:
        """Take the lock (`mode`) without waiting, or close `handle` and name the training that holds it."""
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise PicoError(
                f"{folder} is in use by another training (PID {holder}); wait for it to finish, or choose another `out`"
            ) from None

    @property
    def held(self) -> bool:
        return self.handle is not None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file releases the lock
            self.handle = None


def _prepare(path: Path, resume: bool, overwrite: bool) -> None:
    """Check that `path` can become (or stays) this run's folder; clear it when overwriting."""
    if resume:
        return
    files = [p for p in path.iterdir() if p.name != LOCK_FILE] if path.is_dir() else []
    if overwrite or not (path / "checkpoint.pt").exists() and {p.name for p in files} <= set(RUN_FILES):
        for name in RUN_FILES:  # only a run's own files: `out` may be a folder that holds other things
            (path / name).unlink(missing_ok=True)
    elif files:
        raise PicoError(
            f"{path} already holds a run; continue it with `resume` {path}, replace it with `overwrite`, or choose another `out`"
        )


class RunFolder(Callback):
    """Opens (locks, checks, tidies) a run folder and writes its files as training proceeds."""

    def __init__(self, path: str | Path, tokenizer: Tokenizer, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.tokenizer = tokenizer
        if self.path.exists() and not self.path.is_dir():
            raise PicoError(f"`out` {self.path} is a file, not a folder; choose another `out`")
        self.created = not self.path.exists()
        self.lock = RunLock(self.path)
        try:  # from the moment the folder may exist: a failure or a stop signal removes what was made
            self._make()
            self.lock.acquire()
            sweep_temp_files(self.path)
            _prepare(self.path, resume, overwrite)
        except BaseException:
            self.discard()
            raise
        self.sample_prompt = "\n"

    def _make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PicoError(f"cannot create the run folder {self.path} ({err.strerror}); choose another `out`") from None

    def write_config(self, config: TrainConfig, model: torch.nn.Module, runtime: Runtime, data_keys) -> None:
        write_json(self.path / "config.json", {"train": asdict(config), "model": model_spec(model),
                                               "runtime": runtime.record(), "data": list(data_keys)})
        write_text(self.path / "tokenizer.json", json.dumps(self.tokenizer.state(), indent=1))

    def rewind(self, step: int) -> None:
        """Forget what was logged after `step`, the checkpoint a resumed run starts from, and the final
        eval's record and sample, which the resumed run makes again: then no step is logged twice."""
        records = self.records()
        final = {r["step"] for r in records if r["event"] == "final"}
        kept = [r for r in records if r["step"] <= step and r["event"] != "final"]
        write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        samples = self.path / "samples.txt"
        if samples.is_file():
            text = samples.read_text(errors="replace")
            redone = (m.start() for m in SAMPLE_HEADER.finditer(text) if int(m.group(1)) > step or int(m.group(1)) in final)
            write_text(samples, text[: next(redone, len(text))])
        (self.path / "summary.json").unlink(missing_ok=True)

    def discard(self) -> None:
        """Leave the folder as if this run had never started: it trained nothing (start-up failed or was stopped).

        A folder this process created is removed; in another, only the files of a run that never
        saved a checkpoint go, so a retry into it is never blocked.
        """
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.lock.held and not (self.path / "checkpoint.pt").exists():  # never another writer's files
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
        self.lock.release()

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def records(self) -> list[dict]:
        """The metrics log; a line torn by a killed writer is skipped."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return [r for r in records if isinstance(r, dict) and isinstance(r.get("step"), int)]

    def _append(self, record: dict) -> None:
        append_text(self.metrics_path, json.dumps(record) + "\n")

    def on_train_start(self, trainer: Trainer) -> None:
        self.sample_prompt = self._encodable_prompt(trainer.config.sample_prompt, trainer)

    def _encodable_prompt(self, prompt: str, trainer: Trainer) -> str:
        """`prompt`, or the training text's first token when the vocabulary cannot encode it (a char
        vocabulary without a newline, say), so a run never fails at its first sample."""
        try:
            encode_prompt(self.tokenizer, prompt)
            return prompt
        except PicoError:
            fallback = self.tokenizer.decode(trainer.corpus.train[:1].tolist())
            warn(f"the `sample_prompt` {prompt!r} is not in this tokenizer's vocabulary; samples start from {fallback!r}")
            return fallback

    def on_log(self, trainer: Trainer, record: dict) -> None:
        self._append(record)

    def on_eval(self, trainer: Trainer, record: dict) -> None:
        self._append(record)
        cfg = trainer.config
        # no autocast: a sample is a few hundred one-token steps, where casting costs more than it saves
        # (the baby GPT samples 710 tokens/s in float32 on the CPU, 460 under bfloat16 autocast)
        text = generate(trainer.model, self.sample_prompt, cfg.sample_tokens, tokenizer=self.tokenizer, seed=SAMPLE_SEED)
        append_text(self.path / "samples.txt", f"=== step {trainer.step} (val loss {record['val_loss']:.4f}) ===\n{text}\n\n")

    def on_train_end(self, trainer: Trainer, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)
        self.plot()

    def on_fit_exit(self, trainer: Trainer) -> None:
        self.lock.release()

    def plot(self) -> None:
        plot_curves(self.records(), self.path / "curves.png")
