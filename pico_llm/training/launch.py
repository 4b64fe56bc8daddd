"""Wire a resolved config into a training run: data, model, run folder, trainer, resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data import load_corpus
from ..errors import PicoError
from ..models.registry import build_model, load_plugins
from ..tokenizers import tokenizer_from_state
from .checkpoint import load_checkpoint
from .progress import ProgressBar
from .run import RunFolder, default_run_dir, read_run_config
from .trainer import Callback, Trainer


def start_training(config: TrainConfig, model_fields: dict, callbacks: list[Callback] = ()) -> tuple[Trainer, RunFolder]:
    """Build a fresh run: tokenize the data, build the model (seeded) and open its run folder."""
    config = replace(config, plugins=tuple(str(Path(p).resolve()) for p in config.plugins))
    load_plugins(config.plugins)
    corpus = load_corpus(config.data, config.tokenizer, config.vocab_size, config.val_data)
    corpus.check_context(config.context)
    torch.manual_seed(config.seed)
    model = build_model(config.model, **model_fields, vocab_size=corpus.tokenizer.vocab_size, context=config.context)
    folder = RunFolder(config.out or default_run_dir(config.model), config, model, corpus.tokenizer)
    config = replace(config, out=str(folder.path))
    trainer = Trainer(model, corpus, config, [ProgressBar(), folder, *callbacks], checkpoint_dir=folder.path)
    return trainer, folder


def resume_training(run_dir: str | Path, train_flags: dict, callbacks: list[Callback] = ()) -> tuple[Trainer, RunFolder]:
    """Continue a run from its checkpoint.pt; flags may extend it (e.g. --max-steps) but not change what it is."""
    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    if "optimizer" not in state:
        raise PicoError(f"{run_dir}/checkpoint.pt has no optimizer state; it cannot be resumed")
    for key in ("model", "tokenizer", "context", "data"):
        wanted = train_flags.get(key)
        if wanted is not None and wanted != saved["train"][key]:
            raise PicoError(
                f"--{key} {wanted} differs from the run being resumed ({saved['train'][key]}); "
                "drop the flag or start a new run with --out"
            )
    config = TrainConfig(**{**saved["train"], **{k: v for k, v in train_flags.items() if v is not None}})
    config = replace(config.validate(), out=str(run_dir))
    load_plugins(config.plugins)
    tokenizer = tokenizer_from_state(state["tokenizer"])
    corpus = load_corpus(config.data, tokenizer, config.vocab_size, config.val_data)
    model = build_model(state["model_spec"])
    folder = RunFolder(run_dir, config, model, tokenizer)
    trainer = Trainer(model, corpus, config, [ProgressBar(), folder, *callbacks], checkpoint_dir=run_dir)
    trainer.load_state_dict(state)
    return trainer, folder
