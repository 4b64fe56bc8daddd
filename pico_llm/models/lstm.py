"""LSTM language model: embedding -> multi-layer LSTM -> head (the course starter's baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseConfig, LanguageModel
from .processors import TokenInput
from .registry import register_model


@dataclass
class LSTMConfig(BaseConfig):
    embed_dim: int = 128
    hidden: int = 384
    n_layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("embed_dim", "hidden", "n_layers")


@register_model("lstm")
class LSTM(LanguageModel):
    Config = LSTMConfig
    description = "embedding -> multi-layer LSTM -> linear head (recurrent baseline)"
    debug = {"embed_dim": 16, "hidden": 32}
    width_field = "hidden"

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.embed_dim, config.dropout)
        self.lstm = nn.LSTM(
            config.embed_dim, config.hidden, config.n_layers, batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, config.vocab_size)

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.input(tokens))
        return self.head(output)

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        output, state.caches["lstm"] = self.lstm(self.input(tokens, state))
        return self.head(output[:, -1])

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        output, state.caches["lstm"] = self.lstm(self.input.step(tokens, state), state.caches["lstm"])
        return self.head(output[:, -1])
