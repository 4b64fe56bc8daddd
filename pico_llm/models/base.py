"""The contract every encoder keeps, and the config fields every encoder shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
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


@dataclass
class DecodeState:
    """What a model carries from one decoding step to the next.

    `history` holds the token ids of the current window (at most `context`), `pos` the position the
    next token takes in it, `caches` each model's own buffers (KV caches, conv ring buffers, LSTM
    state), and `window_start` how many tokens the window policy has dropped from the front.
    """

    history: torch.Tensor
    pos: int = 0
    caches: dict[str, Any] = field(default_factory=dict)
    window_start: int = 0


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
        return DecodeState(history=torch.empty(batch, 0, dtype=torch.long, device=device))

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """Start (or restart) the state from a prompt [B, T]; returns the last position's logits."""
        context = self.config.context
        if not self.streams and tokens.shape[1] > context:
            state.window_start += tokens.shape[1] - context
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
        if not self.streams and state.pos >= context:
            keep = state.history[:, state.history.shape[1] - context // 2 :]
            state.window_start += state.history.shape[1] - keep.shape[1]
            return self.prefill(torch.cat([keep, tokens], dim=1), state)
        logits = self._step(tokens, state)
        state.pos += 1
        state.history = torch.cat([state.history, tokens], dim=1)[:, -context:]
        return logits, state

    def _prefill(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        return self(tokens)[:, -1]

    def _step(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        return self(torch.cat([state.history, tokens], dim=1))[:, -1]
