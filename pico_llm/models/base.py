"""The contract every encoder keeps, and the config fields every encoder shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class BaseConfig:
    """Fields every model has: vocabulary, longest context, and the token processors in front.

    `pos_embedding` adds absolute positions (none, learned, sinusoidal; attention models also take
    rotary); `stack` merges each token with its stack-1 predecessors into one input vector (byte
    patches).
    """

    vocab_size: int = 256
    context: int = 128
    pos_embedding: str = "none"
    stack: int = 1

    positions: ClassVar[tuple[str, ...]] = ("none", "learned", "sinusoidal")

    def __post_init__(self) -> None:
        for field in ("vocab_size", "context", "stack"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.pos_embedding not in self.positions:
            raise ValueError(f"pos_embedding must be one of {', '.join(self.positions)} for this model, got {self.pos_embedding!r}")


class LanguageModel(nn.Module):
    """`forward(tokens[B, T]) -> logits[B, T, V]`, causal and vectorised over T.

    Subclasses set `Config` (a dataclass deriving from BaseConfig) and are registered by name.
    """

    name: str = ""
    Config: type = BaseConfig
    description: str = ""
    debug: ClassVar[dict] = {}  # field overrides for a tiny, fast flavour used by tests and CI

    def __init__(self, config: BaseConfig):
        super().__init__()
        self.config = config

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward ≈ 6 × parameters touched per token)."""
        return 6.0 * self.num_params()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
