"""The training loop. It knows about tokens, losses and optimizers, never about a specific model.

One step: sample random windows, forward under autocast, cross-entropy, backward, clip, then AdamW,
or Muon for the hidden matrices with AdamW for the rest (`optimizer`). The learning rates warm up
linearly, then follow the `schedule` down to `min_lr_ratio` × their peak over the run's progress:
a cosine, or "wsd" (warm-up, stable, decay: constant, then a linear cool-down over the last
`cooldown` of the run, the speedrun's). Progress is the larger of steps done / total steps and,
with a time budget, wall time spent / budget, so a time-limited run still ends its schedule at the
low learning rate. Muon's momentum warms up from 0.85 over `muon_momentum_warmup` steps.

A step covers the global batch: `batch_size` windows × `grad_accum` micro-batches × the number of
processes. Under torchrun the model is wrapped in DistributedDataParallel (gradients averaged
across processes, not synchronised on accumulation micro-batches); every process draws the same
random starts for the global batch from one generator and reads its own share, so the batch equals a
single process's with the same global size, and resuming needs only one generator state. Only rank 0
runs the callbacks, evaluates and writes checkpoints; the others stay in step with it.

Nothing is lost on the way out: a stop signal is acted on between steps (a checkpoint of whole
steps, so a resumed run continues the same curve bit for bit); the checkpoint is written before the
final eval, which a signal may cut short; and a non-finite loss stops the run before anything is
saved, so the last good checkpoint stays.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..config import TrainConfig
from ..data.batches import read_windows, sample_starts
from ..data.cache import Corpus
from ..errors import PicoError
from ..models.registry import model_spec
from ..weights import WEIGHTS_FILE, save_weights
from .checkpoint import save_checkpoint
from .metrics import evaluate
from .optimizers import build_optimizer
from .runtime import Runtime, compile_if_asked, resolve_runtime
from .signals import StopSignals


class Callback:
    """Hooks called by `Trainer.fit`; override the ones you need."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_log(self, trainer: Trainer, record: dict) -> None: ...

    def on_eval(self, trainer: Trainer, record: dict) -> None: ...

    def on_train_end(self, trainer: Trainer, summary: dict) -> None: ...

    def on_fit_exit(self, trainer: Trainer) -> None:
        """Called last, however `fit` ends (finished, stopped or failed)."""


class NonFiniteLoss(PicoError):
    """The loss stopped being a number; the run stops before saving anything."""


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(
        text in str(err) for text in ("not enough memory", "can't allocate memory", "Cannot allocate memory")
    )


class Trainer:
    """Trains `model` on `corpus` as `config` says; writes checkpoints into `checkpoint_dir` if given.

    `runtime` (device, dtype, process place) is resolved from `config` when not given; under
    torchrun that joins the job. `fit` returns the summary on rank 0 and {} elsewhere, or {} when
    stopped early (`interrupted`). The context length is the model's (`model.config.context`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        corpus: Corpus,
        config: TrainConfig,
        callbacks: list[Callback] | tuple = (),
        checkpoint_dir: str | Path | None = None,
        runtime: Runtime | None = None,
        signals: StopSignals | None = None,
    ):
        self.context = model.config.context
        corpus.check_context(self.context)
        self.config = config
        self.corpus = corpus
        self.runtime = runtime or resolve_runtime(model, config.device, config.dtype, config.compile, config.batch_size)
        self.place, self.device, self.dtype = self.runtime.place, self.runtime.device, self.runtime.dtype
        self.signals = signals
        self.callbacks = list(callbacks) if self.place.is_main else []
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.model = model.to(self.device)
        self.autocast = self.runtime.autocast
        self.train_model = self._wrap(compile_if_asked(self.model, self.runtime.compile))
        self.optimizer = build_optimizer(self.model, config, self.device)
        self.peak_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.byte_lengths = corpus.tokenizer.token_byte_lengths()
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        self.tokens_per_step = config.batch_size * config.grad_accum * self.place.world_size * self.context
        self.total_steps = self._total_steps()
        self.step = 0
        self.session_start_step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.train_seconds = 0.0
        self.best_val_loss = math.inf
        self.pending_losses: list[torch.Tensor] = []  # per-step losses since the last log
        self.saved_step: int | None = None  # the step of the checkpoint.pt on disk
        self.stop_requested = False
        self.interrupted = False

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the training forward runs through: the model, or under torchrun its DDP wrapper."""
        if not self.place.enabled:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _total_steps(self) -> int | float:
        """`max_steps`, else `epochs` worth of steps; with only a time budget, unbounded; else 1 epoch."""
        cfg = self.config
        if cfg.max_steps is not None:
            return cfg.max_steps
        if cfg.epochs is None and cfg.time_budget is not None:
            return math.inf
        return max(1, math.ceil((cfg.epochs or 1.0) * len(self.corpus.train) / self.tokens_per_step))

    @property
    def epoch(self) -> float:
        return self.tokens_seen / len(self.corpus.train)

    @property
    def session_steps(self) -> int:
        """Steps trained since this trainer started or resumed (0: a stop now has nothing new to save)."""
        return self.step - self.session_start_step

    def progress(self) -> float:
        done = self.step / self.total_steps
        if self.config.time_budget:
            done = max(done, self.elapsed / self.config.time_budget)
        return min(done, 1.0)

    def lr_factor(self) -> float:
        """This step's learning rate as a fraction of each group's peak (see the module docstring)."""
        cfg = self.config
        if self.step < cfg.warmup_steps:
            return (self.step + 1) / cfg.warmup_steps
        floor, progress = cfg.min_lr_ratio, self.progress()
        if cfg.schedule == "wsd":
            return floor + (1 - floor) * min(1.0, (1 - progress) / cfg.cooldown)
        return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * progress))

    def learning_rate(self) -> float:
        """The AdamW learning rate of this step (Muon's is `muon_lr` times the same factor)."""
        return self.config.lr * self.lr_factor()

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step (what a stop signal does), keeping a checkpoint."""
        self.stop_requested = True

    def _micro_batches(self):
        """This process's share of the global batch: `grad_accum` micro-batches of `batch_size` windows."""
        cfg, place = self.config, self.place
        count = cfg.batch_size * cfg.grad_accum * place.world_size
        starts = sample_starts(self.corpus.train, self.context, count, self.batch_generator)
        for micro in starts.reshape(cfg.grad_accum, place.world_size, cfg.batch_size)[:, place.rank]:
            inputs, targets = read_windows(self.corpus.train, micro, self.context)
            yield inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)

    def _no_sync(self, last: bool):
        """DDP all-reduces gradients on the last micro-batch only; the others just accumulate locally."""
        return self.train_model.no_sync() if self.place.enabled and not last else nullcontext()

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the global batch; returns this process's mean loss over its micro-batches."""
        factor = self.lr_factor()
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs):
            group["lr"] = peak * factor
        accum = self.config.grad_accum
        total = torch.zeros((), device=self.device)
        for index, (inputs, targets) in enumerate(self._micro_batches()):
            with self._no_sync(index == accum - 1):
                with self.autocast():
                    logits = self.train_model(inputs)
                loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()) / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        return total

    def evaluate(self, max_tokens: int | None = None, should_stop=None) -> dict | None:
        return evaluate(
            self.model, self.corpus.val, self.byte_lengths, self.context, self.config.batch_size,
            self.device, max_tokens, self.autocast, should_stop,
        )

    def _checked_losses(self) -> torch.Tensor:
        """The losses since the last log, averaged over processes; raises at the first non-finite one."""
        losses = self.place.mean(torch.stack(self.pending_losses)) if self.pending_losses else torch.zeros(0)
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            step = self.step - len(losses) + int(bad[0]) + 1
            kept = f"its checkpoint of step {self.saved_step} is kept" if self.saved_step else "nothing was saved"
            raise NonFiniteLoss(
                f"the training loss became {losses[bad[0]].item()} at step {step}, so the run stopped and {kept}. "
                f"Try a lower `lr` (now {self.config.lr:g}), a `grad_clip` of 1, more `warmup_steps` or `dtype` float32"
            )
        return losses

    def _train_loss(self) -> float:
        """The mean loss since the last log (checked to be finite), starting a new averaging window."""
        loss = self._checked_losses().mean().item()
        self.pending_losses.clear()
        return loss

    def _record(self, event: str, train_loss: float | None, tokens_per_second: float) -> dict:
        return {
            "event": event,
            "step": self.step,
            "epoch": round(self.epoch, 4),
            "wall_seconds": round(self.elapsed, 3),
            "tokens_seen": self.tokens_seen,
            "train_loss": train_loss,
            "lr": self.learning_rate(),
            "tokens_per_second": round(tokens_per_second, 1),
        }

    def _eval_record(self, event: str, train_loss: float | None, tokens_per_second: float, max_tokens: int | None,
                     should_stop=None) -> dict | None:
        """Evaluate, tell the callbacks (metrics, samples), then save the best weights and checkpoint.pt.

        The records are written before the checkpoint, so a run killed in between re-does those steps
        on resume and replaces the records (resume drops records past the checkpoint's step).
        Returns None when `should_stop` cut the evaluation short.
        """
        metrics = self.evaluate(max_tokens, should_stop)
        if metrics is None:
            return None
        record = self._record(event, train_loss, tokens_per_second)
        record.update({f"val_{k}": v for k, v in metrics.items() if k != "tokens"})
        record["val_tokens"] = metrics["tokens"]
        for callback in self.callbacks:
            callback.on_eval(self, record)
        if metrics["loss"] < self.best_val_loss:
            self.best_val_loss = metrics["loss"]
            self.save_best()
        self.save("checkpoint.pt")
        return record

    def _budget_spent(self) -> bool:
        return self.config.time_budget is not None and self.elapsed >= self.config.time_budget

    def fit(self) -> dict:
        """Train until the step count, epochs or time budget is reached; returns the summary.

        Stop signals are caught while it runs (by the `signals` given, else its own): the loop saves a
        checkpoint between steps and returns {} with `interrupted` set.
        """
        own_signals = self.signals is None
        signals = self.signals or StopSignals()
        try:
            with signals if own_signals else nullcontext(), signals.deferred():
                return self._fit(signals)
        except RuntimeError as err:
            if _is_out_of_memory(err):
                raise PicoError(
                    f"out of memory at step {self.step + 1} ({type(err).__name__}); lower `batch_size` "
                    "(with `grad_accum` to keep the global batch) or the model's size; the last checkpoint is kept"
                ) from None
            raise
        finally:
            for callback in self.callbacks:
                callback.on_fit_exit(self)

    def _fit(self, signals: StopSignals) -> dict:
        cfg = self.config
        self.model.train()
        self.session_start_step = self.step
        if self.place.enabled:  # each process its own dropout masks, reproducibly
            torch.manual_seed(hash((cfg.seed, self.place.rank, self.step)) % 2**63)
        for callback in self.callbacks:
            callback.on_train_start(self)
        clock_start = time.perf_counter() - self.elapsed
        session_tokens, session_seconds = 0, 0.0
        while True:
            wants_stop = signals.requested or self.stop_requested
            self.elapsed, wants_stop = self.place.agree(time.perf_counter() - clock_start, wants_stop, self.device)
            if wants_stop or self.step >= self.total_steps or self._budget_spent():
                break
            tick = time.perf_counter()
            self.pending_losses.append(self.train_step())
            train_loss = None
            if self.step % cfg.log_every == 0 or self.step % cfg.eval_every == 0:
                train_loss = self._train_loss()
            step_seconds = time.perf_counter() - tick
            self.train_seconds += step_seconds
            session_seconds += step_seconds
            session_tokens += self.tokens_per_step
            self.elapsed = time.perf_counter() - clock_start
            speed = session_tokens / session_seconds
            if self.step % cfg.log_every == 0:
                record = self._record("log", train_loss, speed)
                for callback in self.callbacks:
                    callback.on_log(self, record)
            if self.step % cfg.eval_every == 0 and self.step < self.total_steps and self.place.is_main:
                self._eval_record("eval", train_loss, speed, cfg.eval_tokens)
        if wants_stop:
            return self._stop()
        self._checked_losses()
        if self.session_steps:
            self.save("checkpoint.pt")  # before the final eval: a signal during it loses no step
        if not self.place.is_main:
            return {}
        speed = session_tokens / session_seconds if session_seconds else 0.0
        final = self._eval_record("final", None, speed, None, should_stop=lambda: signals.requested)
        if final is None:
            self.interrupted = True
            return {}
        summary = self._summary(final)
        for callback in self.callbacks:
            callback.on_train_end(self, summary)
        return summary

    def _stop(self) -> dict:
        """Stopped between steps: save what this session trained (if it is finite) and return."""
        self.interrupted = True
        self._checked_losses()
        if self.session_steps:
            self.save("checkpoint.pt")
        return {}

    def _summary(self, final: dict) -> dict:
        return {
            "model": self.config.model,
            "val_loss": final["val_loss"],
            "val_perplexity": final["val_perplexity"],
            "val_bits_per_byte": final["val_bits_per_byte"],
            "val_accuracy": final["val_accuracy"],
            "best_val_loss": self.best_val_loss,
            "params": sum(p.numel() for p in self.model.parameters()),
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "wall_seconds": round(self.elapsed, 3),
            "train_tokens_per_second": round(self.tokens_seen / self.train_seconds, 1) if self.train_seconds else 0.0,
            "device": self.device.type,
            "dtype": self.runtime.dtype_name,
        }

    def state_dict(self) -> dict:
        """Everything needed to rebuild the model and, with the optimizer, to continue the same curve."""
        return {
            "model_spec": model_spec(self.model),
            "model": self.model.state_dict(),
            "tokenizer": self.corpus.tokenizer.state(),
            "step": self.step,
            "runtime": self.runtime.record(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "tokens_seen": self.tokens_seen,
            "elapsed": self.elapsed,
            "train_seconds": self.train_seconds,
            "best_val_loss": self.best_val_loss,
            "pending_losses": [loss.item() for loss in self.pending_losses],
            "batch_rng": self.batch_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "data": list(self.corpus.keys),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint written by `save`, so training continues exactly where it stopped."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = self.saved_step = state["step"]
        self.tokens_seen = state["tokens_seen"]
        self.elapsed = state["elapsed"]
        self.train_seconds = state["train_seconds"]
        self.best_val_loss = state["best_val_loss"]
        self.pending_losses = [torch.tensor(loss, device=self.device) for loss in state.get("pending_losses", [])]
        self.batch_generator.set_state(state["batch_rng"])
        torch.set_rng_state(state["torch_rng"])

    def save(self, filename: str) -> None:
        """Write the whole training state (what resume needs) to `filename` in the checkpoint folder."""
        if self.checkpoint_dir is not None and self.place.is_main:
            save_checkpoint(self.state_dict(), self.checkpoint_dir / filename)
            if filename == "checkpoint.pt":
                self.saved_step = self.step

    def save_best(self) -> None:
        """Write the weights of the best val loss so far as model.safetensors (what generate, eval and export use)."""
        if self.checkpoint_dir is not None and self.place.is_main:
            metadata = {"step": str(self.step), "val_loss": repr(self.best_val_loss)}
            save_weights(self.model, self.checkpoint_dir / WEIGHTS_FILE, metadata)
