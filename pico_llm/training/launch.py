"""Wire a resolved config into a training run: data, model, run folder, trainer, resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data import Corpus, load_corpus
from ..errors import PicoError
from ..models.registry import build_model, load_plugins
from ..tokenizers import Tokenizer, tokenizer_from_state
from .checkpoint import load_checkpoint
from .device import pick_device
from .distributed import Place, join
from .progress import ProgressBar
from .run import RunFolder, default_run_dir, read_run_config
from .trainer import Callback, Trainer


def _load_corpus(config: TrainConfig, tokenizer: Tokenizer | str, place: Place) -> Corpus:
    """The corpus, prepared by each machine's first process while its others wait, then find it cached."""
    with place.local_main_first():
        return load_corpus(config.data, tokenizer, config.vocab_size, config.val_data,
                           config.text_field, config.tokenize_workers)


def _trainer(
    model: torch.nn.Module, corpus: Corpus, config: TrainConfig, run_dir: str | Path, callbacks, place: Place
) -> tuple[Trainer, RunFolder | None]:
    """The trainer: on rank 0 with the run folder and a progress bar; under torchrun the other ranks write nothing."""
    if not place.is_main:
        return Trainer(model, corpus, config, callbacks), None
    folder = RunFolder(run_dir, config, model, corpus.tokenizer)
    config = replace(config, out=str(folder.path))
    return Trainer(model, corpus, config, [ProgressBar(), folder, *callbacks], checkpoint_dir=folder.path), folder


def start_training(config: TrainConfig, model_fields: dict, callbacks: list[Callback] = ()) -> tuple[Trainer, RunFolder | None]:
    """Build a fresh run: tokenize the data, build the model (seeded) and open its run folder (rank 0 only)."""
    config = replace(config, plugins=tuple(str(Path(p).resolve()) for p in config.plugins))
    load_plugins(config.plugins)
    place, _ = join(pick_device(config.device))
    corpus = _load_corpus(config, config.tokenizer, place)
    corpus.check_context(config.context)
    torch.manual_seed(config.seed)
    model = build_model(config.model, **model_fields, vocab_size=corpus.tokenizer.vocab_size, context=config.context)
    return _trainer(model, corpus, config, config.out or default_run_dir(config.model), callbacks, place)


def resume_training(run_dir: str | Path, train_flags: dict, callbacks: list[Callback] = ()) -> tuple[Trainer, RunFolder | None]:
    """Continue a run from its checkpoint.pt; flags may extend it (e.g. --max-steps) but not change what it is."""
    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    if "optimizer" not in state:
        raise PicoError(f"{run_dir}/checkpoint.pt has no optimizer state; it cannot be resumed")
    for key in ("model", "tokenizer", "context", "data", "text_field"):
        wanted = train_flags.get(key)
        if wanted is not None and wanted != saved["train"].get(key):
            raise PicoError(
                f"--{key.replace('_', '-')} {wanted} differs from the run being resumed ({saved['train'].get(key)}); "
                "drop the flag or start a new run with --out"
            )
    config = TrainConfig(**{**saved["train"], **{k: v for k, v in train_flags.items() if v is not None}})
    config = replace(config.validate(), out=str(run_dir))
    load_plugins(config.plugins)
    place, _ = join(pick_device(config.device))
    corpus = _load_corpus(config, tokenizer_from_state(state["tokenizer"]), place)
    model = build_model(state["model_spec"])
    trainer, folder = _trainer(model, corpus, config, run_dir, callbacks, place)
    trainer.load_state_dict(state)
    return trainer, folder
