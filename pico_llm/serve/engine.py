"""Continuous batching: one thread per model decodes every running request as one batch.

A request with n choices becomes n jobs. A job waits in a bounded queue until the batch has a free
row (at most `max_batch` rows); it then joins between two steps: its prompt is prefilled on its own
and its decode state joins the batch's (`DecodeState.concat`: rows may be at different positions).
Every step feeds each row its last token, samples each row's next one with the row's own settings
and seeded generator (so a seeded request gives the same text batched or alone), and sends the text
to the job's listener. A row leaves at its stop string, its `max_tokens`, or when its client goes
away (`Job.cancelled`), without disturbing the others.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

import torch

from ..inference.generation import Sampling, TextAssembler, sample_next
from ..models.base import DecodeState


class QueueFull(Exception):
    """No free row and no room in the queue: the client should retry later (HTTP 429)."""


@dataclass
class Job:
    """One sequence to generate; `listen(kind, value)` is called from the engine's thread with
    ("text", piece), then ("done", finish reason "stop" or "length"), or ("error", message)."""

    prompt_ids: list[int]
    max_tokens: int
    sampling: Sampling
    stop: list[str]
    listen: Callable[[str, object], None]
    cancelled: bool = False
    completion_tokens: int = 0


@dataclass
class Row:
    """A running job's decoding: its sampler's generator, the tokens it has seen, its text so far."""

    job: Job
    generator: torch.Generator
    seen: torch.Tensor
    assembler: TextAssembler
    last: int = 0
    finished: bool = field(default=False)


class Engine:
    """Serves one model: `submit` jobs from any thread; a daemon thread decodes them."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_batch: int = 32, max_queue: int = 64):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.device = next(model.parameters()).device
        self.pending: deque[Job] = deque()
        self.running = 0
        self.cancelled = 0  # rows that left because their client went away
        self.wake = threading.Condition()
        self.threads = max(1, torch.get_num_threads() - 1)
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"pico-llm engine {model.name}")
        self.thread.start()

    def close(self) -> None:
        """Stop decoding (the server is shutting down) and wait for the thread to end."""
        with self.wake:
            self.closing = True
            self.wake.notify()
        self.thread.join(timeout=10)

    def submit(self, jobs: list[Job]) -> None:
        """Queue `jobs` (all or none); QueueFull when the free rows and the queue cannot hold them."""
        with self.wake:
            if len(self.pending) + len(jobs) > self.max_queue + max(self.max_batch - self.running, 0):
                raise QueueFull(f"{len(self.pending)} requests are already waiting")
            self.pending.extend(jobs)
            self.wake.notify()

    def _serve(self) -> None:
        # one core stays for the HTTP side: an intra-op team spread over every core is preempted by it, and its
        # barriers then cost more than the parallelism gains (measured: 2 threads 2.5x slower than 1 on 2 cores)
        torch.set_num_threads(self.threads)
        rows: list[Row] = []
        state: DecodeState | None = None
        while True:
            with self.wake:
                while not self.pending and not rows and not self.closing:
                    self.wake.wait()
                if self.closing:
                    return
                joining = [self.pending.popleft() for _ in range(min(len(self.pending), self.max_batch - len(rows)))]
                self.running = len(rows) + len(joining)
            try:
                state = self._admit(joining, rows, state)
                state = self._step(rows, state)
            except Exception as err:  # a bug must not take the server down: every client it hit is told
                hit = [row.job for row in rows]
                hit += [job for job in joining if all(job is not other for other in hit)]
                for job in hit:
                    job.listen("error", f"{type(err).__name__}: {err}")
                rows, state = [], None
            rows, state = self._drop_finished(rows, state)
            with self.wake:
                self.running = len(rows)

    @torch.no_grad()
    def _admit(self, jobs: list[Job], rows: list[Row], state: DecodeState | None) -> DecodeState | None:
        """Prefill the new jobs (those with prompts of one length together), sample their first tokens, and
        join their states to the batch's in one copy."""
        joined = []
        by_length = groupby(sorted((job for job in jobs if not job.cancelled), key=lambda job: len(job.prompt_ids)),
                            key=lambda job: len(job.prompt_ids))
        for _, group in by_length:
            group = list(group)
            prompts = torch.tensor([job.prompt_ids for job in group], dtype=torch.long, device=self.device)
            logits, new = self.model.prefill(prompts, self.model.init_state(len(group)))
            for index, job in enumerate(group):
                rows.append(self._row(job))
                self._sample(rows[-1], logits[index : index + 1])
            joined.append(new)
        if not joined:
            return state
        return DecodeState.concat(([state] if state is not None else []) + joined)

    def _row(self, job: Job) -> Row:
        generator = torch.Generator(device=self.device)
        if job.sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(job.sampling.seed)
        seen = torch.zeros(1, self.model.config.vocab_size, dtype=torch.bool, device=self.device)
        seen[0, job.prompt_ids] = True
        return Row(job, generator, seen, TextAssembler(self.tokenizer, job.stop))

    @torch.no_grad()
    def _step(self, rows: list[Row], state: DecodeState | None) -> DecodeState | None:
        """One token for every row that is still going."""
        if state is None or all(row.finished for row in rows):
            return state
        tokens = torch.tensor([[row.last] for row in rows], dtype=torch.long, device=self.device)
        logits, state = self.model.step(tokens, state)
        for index, row in enumerate(rows):
            if not row.finished:
                self._sample(row, logits[index : index + 1])
        return state

    def _sample(self, row: Row, logits: torch.Tensor) -> None:
        """Pick the row's next token, send the text it completes, and finish the row where it ends."""
        job = row.job
        if job.cancelled:
            return
        token = sample_next(logits, job.sampling, row.generator, row.seen)
        row.seen.scatter_(1, token, True)
        row.last = int(token)
        job.completion_tokens += 1
        piece = row.assembler.push(row.last)
        if row.assembler.done or job.completion_tokens >= job.max_tokens:
            piece += row.assembler.flush()
            row.finished = True
        if piece:
            job.listen("text", piece)
        if row.finished:
            job.listen("done", "stop" if row.assembler.done else "length")

    def _drop_finished(self, rows: list[Row], state: DecodeState | None) -> tuple[list[Row], DecodeState | None]:
        for row in rows:
            if row.job.cancelled and not row.finished:
                row.finished = True
                self.cancelled += 1
        keep = [index for index, row in enumerate(rows) if not row.finished]
        if len(keep) == len(rows):
            return rows, state
        if not keep:
            return [], None
        return [rows[i] for i in keep], state.select(torch.tensor(keep, device=self.device))

