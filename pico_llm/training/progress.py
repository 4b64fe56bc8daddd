"""A tqdm progress bar showing step, train loss and tokens/s (only when stderr is a terminal)."""

from __future__ import annotations

from .trainer import Callback, Trainer


class ProgressBar(Callback):
    def on_train_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=None if trainer.total_steps == float("inf") else trainer.total_steps, initial=trainer.step, unit="step", disable=None, dynamic_ncols=True)

    def on_log(self, trainer: Trainer, record: dict) -> None:
        self.bar.update(trainer.step - self.bar.n)
        self.bar.set_postfix(loss=f"{record['train_loss']:.4f}", tok_s=f"{record['tokens_per_second']:.0f}")

    def on_eval(self, trainer: Trainer, record: dict) -> None:
        self.bar.write(
            f"step {record['step']}: val loss {record['val_loss']:.4f}, "
            f"val bits/byte {record['val_bits_per_byte']:.4f}, {record['wall_seconds']:.0f}s"
        )

    def on_train_end(self, trainer: Trainer, summary: dict) -> None:
        self.bar.close()
