"""The contract every encoder keeps, and the config fields every encoder shares."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class BaseConfig:
    """Fields every model has: the vocabulary it predicts and the longest context it is trained on."""

    vocab_size: int = 256
    context: int = 128

    def __post_init__(self) -> None:
        if self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")
        if self.context <= 0:
            raise ValueError(f"context must be positive, got {self.context}")


class LanguageModel(nn.Module):
    """`forward(tokens[B, T]) -> logits[B, T, V]`, causal and vectorised over T.

    Subclasses set `Config` (a dataclass deriving from BaseConfig) and are registered by name.
    """

    name: str = ""
    Config: type = BaseConfig
    description: str = ""

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
