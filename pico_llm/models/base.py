"""The contract every encoder keeps, and the config fields every encoder shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_fields, option
from ..errors import PicoError


@dataclass
class BaseConfig:
    """Fields every model has: vocabulary, longest context, and the token processors in front.

    `pos_embedding` adds absolute positions (none, learned, sinusoidal; attention models also take
    rotary); `stack` merges each token with its stack-1 predecessors into one input vector (byte
    patches).

    Every field, a subclass's too, is checked when the config is built (`check_fields`: its type,
    and the range or choices its `option(...)` declares), so a model never sees a bad value.
    """

    vocab_size: int = option(256, min=1, max=1 << 24)
    context: int = option(128, min=1, max=1 << 20)
    pos_embedding: str = "none"
    stack: int = option(1, min=1, max=1024)

    positions: ClassVar[tuple[str, ...]] = ("none", "learned", "sinusoidal")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.pos_embedding not in self.positions:  # not an option(): the allowed set depends on the class
            raise PicoError(
                f"`pos_embedding` must be one of {', '.join(self.positions)} for this model, got {self.pos_embedding!r}"
            )


def select_rows(value: Any, rows: torch.Tensor) -> Any:
    """The `rows` of a decode cache: a batch-first tensor, a dict of caches, or an object with `select`."""
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, dict):
        return {key: select_rows(item, rows) for key, item in value.items()}
    return value.select(rows)


def concat_rows(values: list) -> Any:
    """Decode caches of several batches as one batch, rows in order (the inverse of `select_rows`)."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values)
    if isinstance(first, dict):
        return {key: concat_rows([value[key] for value in values]) for key in first}
    return type(first).concat(values)


@dataclass
class DecodeState:
    """What a model carries from one decoding step to the next, for every row of a batch.

    Rows may be at different positions: a server decodes requests that started at different times as
    one batch. `pos` is the position the next token takes in each row's window: an int while every
    row is at the same one (the fast path: a plain slice of the caches), else one per row [B].
    `history` holds the last tokens of every row's window, right-aligned (row b's are its last
    min(pos[b], context)), `caches` each model's own buffers, batch first (KV caches, conv buffers,
    LSTM state), and `window_start[b]` how many tokens the window policy has dropped from row b.
    """

    history: torch.Tensor
    pos: int | torch.Tensor = 0
    caches: dict[str, Any] = field(default_factory=dict)
    window_start: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.window_start is None:
            self.window_start = torch.zeros(self.batch, dtype=torch.long, device=self.history.device)

    @property
    def batch(self) -> int:
        return self.history.shape[0]

    @property
    def positions(self) -> torch.Tensor:
        """`pos` as one position per row [B]."""
        if isinstance(self.pos, int):
            return torch.full((self.batch,), self.pos, dtype=torch.long, device=self.history.device)
        return self.pos

    def select(self, rows: torch.Tensor) -> DecodeState:
        """The state of `rows` alone (e.g. the requests still running)."""
        return DecodeState(self.history[rows], compact(self.positions[rows]), select_rows(self.caches, rows),
                           self.window_start[rows])

    @staticmethod
    def concat(states: list[DecodeState]) -> DecodeState:
        """Several states as one batch (e.g. new requests joining a running batch); histories left-padded."""
        width = max(state.history.shape[1] for state in states)
        history = torch.cat([F.pad(state.history, (width - state.history.shape[1], 0)) for state in states])
        return DecodeState(history, compact(torch.cat([state.positions for state in states])),
                           concat_rows([state.caches for state in states]),
                           torch.cat([state.window_start for state in states]))


def compact(positions: torch.Tensor) -> int | torch.Tensor:
    """One int when every row is at the same position, so decoding takes its fast path again."""
    return int(positions[0]) if len(positions) and bool((positions == positions[0]).all()) else positions


class LanguageModel(nn.Module):
    """`forward(tokens[B, T]) -> logits[B, T, V]`, causal and vectorised over T.

    Subclasses set `Config` (a dataclass deriving from BaseConfig) and are registered by name.

    Incremental decoding: `init_state(batch)`, `prefill(tokens, state)`, `step(tokens[B, 1], state)`,
    each returning the logits of the last position [B, V], equal to `forward`'s. Models make a step
    cost only the new work by overriding `_prefill` and `_step`; the defaults re-run `forward` on the
    window, so a new encoder decodes correctly before it decodes fast.

    Past the context: a model that `streams` (no absolute positions, no attention window) simply
    continues, and its logits equal a full forward over the whole sequence. Any other model slides
    its window: when `context` positions are used, it keeps the last `context // 2` tokens,
    re-prefills them from position 0 and goes on (amortised cost: one extra token per step).
    """

    name: str = ""
    Config: type = BaseConfig
    description: str = ""
    debug: ClassVar[dict] = {}  # field overrides for a tiny, fast flavour used by tests and CI
    width_field: ClassVar[str | None] = None  # the config field that scales the model (for matched-size benchmarks)
    width_step: ClassVar[int] = 8  # widths a multiple of it stay valid (head counts, even head dims for RoPE)

    def __init__(self, config: BaseConfig):
        super().__init__()
        self.config = config

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: forward + backward ≈ 6 × the weights used in a matmul per token.

        Embedding tables are look-ups, not matmuls, so they do not count unless tied to the head.
        """
        linear_weights = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        lookups = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Embedding) and id(m.weight) not in linear_weights)
        return 6.0 * (self.num_params() - lookups)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def streams(self) -> bool:
        """True when decoding can run past the context with no window (see the class docstring)."""
        return False

    def init_state(self, batch: int) -> DecodeState:
        device = next(self.parameters()).device
        return DecodeState(torch.empty(batch, 0, dtype=torch.long, device=device))

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """Start (or restart) every row of the state from a prompt [B, T]; returns the last position's logits."""
        context = self.config.context
        if not self.streams and tokens.shape[1] > context:
            state.window_start = state.window_start + tokens.shape[1] - context
            tokens = tokens[:, -context:]
        state.caches = {}
        logits = self._prefill(tokens, state)
        state.pos = tokens.shape[1]
        state.history = tokens[:, -context:]
        return logits, state

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """Feed one new token per row [B, 1]; returns the logits for the position after it."""
        context = self.config.context
        if not self.streams and (state.pos >= context if isinstance(state.pos, int) else bool((state.pos >= context).any())):
            return self._slide(tokens, state, state.positions >= context)
        logits = self._step(tokens, state)
        state.pos = state.pos + 1
        state.history = torch.cat([state.history, tokens], dim=1)[:, -context:]
        return logits, state

    def _slide(self, tokens: torch.Tensor, state: DecodeState, full: torch.Tensor) -> tuple[torch.Tensor, DecodeState]:
        """Rows whose window is full keep its last context // 2 tokens and re-prefill them with the new
        token; the other rows take a plain step; the batch keeps its row order."""
        context = self.config.context
        rows = full.nonzero()[:, 0]
        slid = self.init_state(len(rows))
        slid.window_start = state.window_start[rows] + (context - context // 2)
        logits, slid = self.prefill(torch.cat([state.history[rows, -(context // 2):], tokens[rows]], dim=1), slid)
        if len(rows) == state.batch:
            return logits, slid
        others = (~full).nonzero()[:, 0]
        other_logits, rest = self.step(tokens[others], state.select(others))
        order = torch.argsort(torch.cat([others, rows]))
        return torch.cat([other_logits, logits])[order], DecodeState.concat([rest, slid]).select(order)

    def _prefill(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        return self(tokens)[:, -1]

    def _step(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Without incremental decoding: a forward over each row's window and the new token, rows with
        windows of one length together."""
        lengths = state.positions.clamp(max=self.config.context)
        groups = [(lengths == length).nonzero()[:, 0] for length in lengths.unique().tolist()]
        logits = [self(torch.cat([state.history[rows, state.history.shape[1] - int(lengths[rows[0]]) :], tokens[rows]],
                                 dim=1))[:, -1] for rows in groups]
        return torch.cat(logits)[torch.argsort(torch.cat(groups))]
