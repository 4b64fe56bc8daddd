"""Wire a resolved config into a training run: data, model, runtime, run folder, trainer, resume.

Everything that can be refused is checked before the first step; a run folder made for a run that is
refused or interrupted before it trained anything is removed again, so a retry is never blocked.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data.cache import Corpus, load_corpus
from ..data.tokenizers import Tokenizer, tokenizer_from_state
from ..errors import PicoError
from ..inference.loading import read_run_config
from ..models.registry import build_model, load_plugins, same_spec
from .checkpoint import load_checkpoint
from .distributed import Place, join
from .progress import ProgressBar
from .run import RunFolder, RunLock, default_run_dir
from .runtime import pick_device, resolve_runtime
from .signals import StopSignals
from .tensorboard import TensorBoardLogger
from .trainer import Callback, Trainer

FIXED_ON_RESUME = ("model", "tokenizer", "data", "val_data", "text_field", "optimizer")


def _load_corpus(config: TrainConfig, tokenizer: Tokenizer | str, place: Place) -> Corpus:
    """The corpus, prepared by each machine's first process while its others wait, then find it cached."""
    with place.local_main_first():
        return load_corpus(config.data, tokenizer, config.vocab_size, config.val_data,
                           config.text_field, config.tokenize_workers)


def _open(
    model: torch.nn.Module, corpus: Corpus, config: TrainConfig, run_dir: str | Path, callbacks, signals,
    *, state: dict | None = None, overwrite: bool = False,
) -> tuple[Trainer, RunFolder | None]:
    """Resolve the runtime and build the trainer; on rank 0 also open the run folder and record the run in it.

    `state` is the checkpoint of a run being resumed. Until the trainer is ready, any failure or
    interrupt removes what a fresh run wrote, and leaves a resumed run's folder as it was.
    """
    recorded = state.get("runtime") if state else None
    place, _ = join(pick_device(config.device))
    if not place.is_main:  # under torchrun the other ranks write nothing
        runtime = resolve_runtime(model, config.device, config.dtype, config.compile, config.batch_size, recorded)
        trainer = Trainer(model, corpus, config, callbacks, runtime=runtime, signals=signals)
        if state:
            trainer.load_state_dict(state)
        return trainer, None
    folder = None
    try:
        folder = RunFolder(run_dir, corpus.tokenizer, resume=state is not None, overwrite=overwrite)
        runtime = resolve_runtime(model, config.device, config.dtype, config.compile, config.batch_size, recorded)
        config = replace(config, out=str(folder.path))
        extra = [TensorBoardLogger(config.tensorboard)] if config.tensorboard else []
        trainer = Trainer(model, corpus, config, [ProgressBar(), folder, *extra, *callbacks], folder.path, runtime, signals)
        if state:
            trainer.load_state_dict(state)
            folder.rewind(trainer.step)
        folder.write_config(config, model, runtime, corpus.keys)
    except BaseException:
        if folder is not None and state:
            folder.lock.release()
        elif folder is not None:
            folder.discard()
        raise
    return trainer, folder


def start_training(
    config: TrainConfig, model_fields: dict, callbacks: list[Callback] = (), signals: StopSignals | None = None,
    overwrite: bool = False,
) -> tuple[Trainer, RunFolder | None]:
    """Build a fresh run: tokenize the data, build the model (seeded) and open its run folder (rank 0 only).

    `model_fields` are the model's config fields (its `context` among them); `overwrite` replaces a
    finished or interrupted run already in `config.out`.
    """
    config = replace(config, plugins=tuple(str(Path(p).resolve()) for p in config.plugins))
    load_plugins(config.plugins)
    place, _ = join(pick_device(config.device))
    corpus = _load_corpus(config, config.tokenizer, place)
    torch.manual_seed(config.seed)
    model = build_model(config.model, **model_fields, vocab_size=corpus.tokenizer.vocab_size)
    corpus.check_context(model.config.context)
    run_dir = config.out or default_run_dir(config.model)
    return _open(model, corpus, config, run_dir, callbacks, signals, overwrite=overwrite)


def _checkpoint_to_resume(run_dir: Path, saved: dict) -> dict:
    """The run's checkpoint.pt, checked to hold a resumable state of the run's own model."""
    if not (run_dir / "checkpoint.pt").is_file():
        raise PicoError(f"{run_dir} has no checkpoint.pt: nothing was trained yet; start the run again instead of resuming it")
    state = load_checkpoint(run_dir / "checkpoint.pt")
    if "optimizer" not in state:
        raise PicoError(f"{run_dir}/checkpoint.pt has no optimizer state; it cannot be resumed")
    if not same_spec(state["model_spec"], saved["model"]):
        raise PicoError(
            f"{run_dir}/checkpoint.pt holds a {state['model_spec'].get('name')} model that differs from the run's "
            f"config.json ({saved['model'].get('name')}); it belongs to another run: start a new run instead"
        )
    return state


def resume_training(
    run_dir: str | Path, train_flags: dict, callbacks: list[Callback] = (), signals: StopSignals | None = None,
    allow_data_change: bool = False,
) -> tuple[Trainer, RunFolder | None]:
    """Continue a run from its checkpoint.pt; flags may extend it (e.g. `max_steps`) but not change what it is."""
    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    if "train" not in saved:
        raise PicoError(f"{run_dir} is a pretrained folder, not a run: it has no training state to resume")
    RunLock.check_free(run_dir)
    for key in FIXED_ON_RESUME:
        wanted = train_flags.get(key)
        if wanted is not None and wanted != saved["train"].get(key):
            raise PicoError(
                f"`{key}` {wanted} differs from the run being resumed ({saved['train'].get(key)}); "
                "drop it, or start a new run with another `out`"
            )
    state = _checkpoint_to_resume(run_dir, saved)
    config = TrainConfig.from_dict({**saved["train"], **{k: v for k, v in train_flags.items() if v is not None}})
    config = replace(config, out=str(run_dir))
    load_plugins(config.plugins)
    place, _ = join(pick_device(config.device))
    corpus = _load_corpus(config, tokenizer_from_state(state["tokenizer"]), place)
    if state.get("data") and list(corpus.keys) != state["data"] and not allow_data_change:
        raise PicoError(
            f"the data {config.data} changed since this run trained on it (its content hash differs); restore it, "
            "or continue on the new data with `allow_data_change`"
        )
    model = build_model(state["model_spec"])
    return _open(model, corpus, config, run_dir, callbacks, signals, state=state)
