"""`--tensorboard DIR`: the metrics log's scalars, also as TensorBoard events (tensorboard is an optional extra)."""

from __future__ import annotations

from ..errors import PicoError
from .trainer import Callback, Trainer

SCALARS = {"train_loss": "train/loss", "lr": "train/lr", "tokens_per_second": "train/tokens_per_second",
           "val_loss": "val/loss", "val_perplexity": "val/perplexity", "val_bits_per_byte": "val/bits_per_byte",
           "val_accuracy": "val/accuracy"}


class TensorBoardLogger(Callback):
    def __init__(self, log_dir: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise PicoError("`tensorboard` logging needs the tensorboard package: pip install 'pico-llm[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir)

    def _write(self, record: dict, section: str) -> None:
        for key, tag in SCALARS.items():
            if tag.startswith(section) and record.get(key) is not None:
                self.writer.add_scalar(tag, record[key], record["step"])
        self.writer.flush()

    def on_log(self, trainer: Trainer, record: dict) -> None:
        self._write(record, "train/")

    def on_eval(self, trainer: Trainer, record: dict) -> None:
        self._write(record, "val/")

    def on_fit_exit(self, trainer: Trainer) -> None:
        self.writer.close()
