"""The training loop. It knows about tokens, losses and optimizers, never about a specific model.

One step: sample random windows, forward under autocast, cross-entropy, backward, clip, AdamW. The
learning rate warms up linearly, then follows a cosine to `min_lr_ratio × lr` over the run's
progress, where progress is the larger of steps done / total steps and, with a time budget, wall
time spent / budget, so a time-limited run still ends its schedule at the low learning rate.

A step covers the global batch: `batch_size` windows × `grad_accum` micro-batches × the number of
processes. Under torchrun the model is wrapped in DistributedDataParallel (gradients averaged
across processes, not synchronised on accumulation micro-batches); every process draws the same
random starts for the global batch from one generator and reads its own share, so the batch equals a
single process's with the same global size, and resuming needs only one generator state. Only rank 0
runs the callbacks, evaluates and writes checkpoints; the others stay in step with it.
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
from ..data import Corpus, read_windows, sample_starts
from ..models.registry import model_spec
from .checkpoint import save_checkpoint
from .device import autocast_for, compile_if_asked, fastest_dtype, pick_device, pick_dtype
from .distributed import join
from .metrics import evaluate


class Callback:
    """Hooks called by `Trainer.fit`; override the ones you need."""

    def on_train_start(self, trainer: "Trainer") -> None: ...

    def on_log(self, trainer: "Trainer", record: dict) -> None: ...

    def on_eval(self, trainer: "Trainer", record: dict) -> None: ...

    def on_train_end(self, trainer: "Trainer", summary: dict) -> None: ...


class Trainer:
    """Trains `model` on `corpus` as `config` says; writes checkpoints into `checkpoint_dir` if given.

    Under torchrun it joins the job itself; `fit` then returns the summary on rank 0 and {} elsewhere.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        corpus: Corpus,
        config: TrainConfig,
        callbacks: list[Callback] | tuple = (),
        checkpoint_dir: str | Path | None = None,
    ):
        corpus.check_context(config.context)
        self.config = config
        self.corpus = corpus
        self.place, self.device = join(pick_device(config.device))
        self.callbacks = list(callbacks) if self.place.is_main else []
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.model = model.to(self.device)
        self.dtype = self._pick_dtype()
        self.autocast = autocast_for(self.device, self.dtype)
        self.train_model = self._wrap(compile_if_asked(self.model, config.compile))
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.byte_lengths = corpus.tokenizer.token_byte_lengths()
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        self.tokens_per_step = config.batch_size * config.grad_accum * self.place.world_size * config.context
        self.total_steps = self._total_steps()
        self.step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.train_seconds = 0.0
        self.best_val_loss = math.inf
        self.stop_requested = False
        self.interrupted = False

    def _pick_dtype(self) -> torch.dtype:
        """`--dtype auto` on a CPU with bfloat16: time both and keep the faster for this model.

        bfloat16 matmuls run twice as fast as float32 here, but a model gains only if its other ops
        have fast bfloat16 kernels too (the CPU's flash-attention backward is 5x slower in bfloat16,
        BENCHMARKS.md), so the choice is measured, not assumed. Multi-process runs skip the
        measurement so that every process makes the same choice.
        """
        dtype = pick_dtype(self.config.dtype, self.device)
        if self.config.dtype != "auto" or self.device.type != "cpu" or dtype == torch.float32 or self.place.enabled:
            return dtype
        windows = min(self.config.batch_size, 8)
        return fastest_dtype(self.model, (torch.float32, dtype), windows, self.config.context, self.device)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the training forward runs through: the model, or under torchrun its DDP wrapper."""
        if not self.place.enabled:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW with weight decay on matrices only (not on biases, norms or embeddings' peers)."""
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        options = {"lr": self.config.lr, "betas": (0.9, self.config.beta2)}
        try:  # one fused kernel: measured 4-5x faster than foreach on CPU (see BENCHMARKS.md)
            return torch.optim.AdamW(groups, fused=True, **options)
        except RuntimeError:  # a device without the fused kernel
            return torch.optim.AdamW(groups, foreach=True, **options)

    def _total_steps(self) -> int | float:
        """--max-steps, else --epochs worth of steps; with only a time budget, unbounded; else 1 epoch."""
        cfg = self.config
        if cfg.max_steps is not None:
            return cfg.max_steps
        if cfg.epochs is None and cfg.time_budget is not None:
            return math.inf
        return max(1, math.ceil((cfg.epochs or 1.0) * len(self.corpus.train) / self.tokens_per_step))

    @property
    def epoch(self) -> float:
        return self.tokens_seen / len(self.corpus.train)

    def progress(self) -> float:
        done = self.step / self.total_steps
        if self.config.time_budget:
            done = max(done, self.elapsed / self.config.time_budget)
        return min(done, 1.0)

    def learning_rate(self) -> float:
        cfg = self.config
        if self.step < cfg.warmup_steps:
            return cfg.lr * (self.step + 1) / cfg.warmup_steps
        floor = cfg.lr * cfg.min_lr_ratio
        return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * self.progress()))

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step (what Ctrl-C does), keeping a checkpoint."""
        self.stop_requested = True

    def _micro_batches(self):
        """This process's share of the global batch: `grad_accum` micro-batches of `batch_size` windows."""
        cfg, place = self.config, self.place
        count = cfg.batch_size * cfg.grad_accum * place.world_size
        starts = sample_starts(self.corpus.train, cfg.context, count, self.batch_generator)
        for micro in starts.reshape(cfg.grad_accum, place.world_size, cfg.batch_size)[:, place.rank]:
            inputs, targets = read_windows(self.corpus.train, micro, cfg.context)
            yield inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)

    def _no_sync(self, last: bool):
        """DDP all-reduces gradients on the last micro-batch only; the others just accumulate locally."""
        return self.train_model.no_sync() if self.place.enabled and not last else nullcontext()

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the global batch; returns this process's mean loss over its micro-batches."""
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
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

    def evaluate(self, max_tokens: int | None = None) -> dict:
        return evaluate(
            self.model, self.corpus.val, self.byte_lengths, self.config.context, self.config.batch_size,
            self.device, max_tokens, self.autocast,
        )

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

    def _eval_record(self, event: str, train_loss: float | None, tokens_per_second: float, max_tokens: int | None) -> dict:
        metrics = self.evaluate(max_tokens)
        record = self._record(event, train_loss, tokens_per_second)
        record.update({f"val_{k}": v for k, v in metrics.items() if k != "tokens"})
        record["val_tokens"] = metrics["tokens"]
        if metrics["loss"] < self.best_val_loss:
            self.best_val_loss = metrics["loss"]
            self.save("best.pt", with_optimizer=False)
        self.save("checkpoint.pt")
        for callback in self.callbacks:
            callback.on_eval(self, record)
        return record

    def _budget_spent(self) -> bool:
        return self.config.time_budget is not None and self.elapsed >= self.config.time_budget

    def fit(self) -> dict:
        """Train until the step count, epochs or time budget is reached; returns the summary."""
        cfg = self.config
        self.model.train()
        if self.place.enabled:  # each process its own dropout masks, reproducibly
            torch.manual_seed(hash((cfg.seed, self.place.rank, self.step)) % 2**63)
        for callback in self.callbacks:
            callback.on_train_start(self)
        clock_start = time.perf_counter() - self.elapsed
        session_tokens, session_seconds = 0, 0.0
        loss_sum, loss_count = torch.zeros((), device=self.device), 0
        try:
            while self.step < self.total_steps and not self._budget_spent() and not self.stop_requested:
                tick = time.perf_counter()
                loss_sum += self.train_step()
                loss_count += 1
                train_loss = None
                if self.step % cfg.log_every == 0 or self.step % cfg.eval_every == 0:
                    train_loss = self.place.mean(loss_sum).item() / loss_count
                    loss_sum.zero_()
                    loss_count = 0
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
                    self.elapsed = time.perf_counter() - clock_start
                self.elapsed, self.stop_requested = self.place.agree(self.elapsed, self.stop_requested, self.device)
        except KeyboardInterrupt:
            self.stop_requested = True
        if self.stop_requested:
            self.interrupted = True
            self.save("checkpoint.pt")
            return {}
        if not self.place.is_main:
            return {}
        speed = session_tokens / session_seconds if session_seconds else 0.0
        final = self._eval_record("final", None, speed, None)
        summary = {
            "model": cfg.model,
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
            "dtype": str(self.dtype).removeprefix("torch."),
        }
        for callback in self.callbacks:
            callback.on_train_end(self, summary)
        return summary

    def state_dict(self, with_optimizer: bool = True) -> dict:
        """Everything needed to rebuild the model and, with the optimizer, to continue the same curve."""
        state = {
            "model_spec": model_spec(self.model),
            "model": self.model.state_dict(),
            "tokenizer": self.corpus.tokenizer.state(),
            "step": self.step,
        }
        if with_optimizer:
            state.update(
                optimizer=self.optimizer.state_dict(),
                scaler=self.scaler.state_dict(),
                tokens_seen=self.tokens_seen,
                elapsed=self.elapsed,
                train_seconds=self.train_seconds,
                best_val_loss=self.best_val_loss,
                batch_rng=self.batch_generator.get_state(),
                torch_rng=torch.get_rng_state(),
            )
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint written by `save`, so training continues exactly where it stopped."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.tokens_seen = state["tokens_seen"]
        self.elapsed = state["elapsed"]
        self.train_seconds = state["train_seconds"]
        self.best_val_loss = state["best_val_loss"]
        self.batch_generator.set_state(state["batch_rng"])
        torch.set_rng_state(state["torch_rng"])

    def save(self, filename: str, with_optimizer: bool = True) -> None:
        if self.checkpoint_dir is not None and self.place.is_main:
            save_checkpoint(self.state_dict(with_optimizer), self.checkpoint_dir / filename)
