"""LSTM language model: embedding -> multi-layer LSTM -> head (the course starter's baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import option
from .base import BaseConfig, LanguageModel
from .processors import TokenInput
from .registry import register_model


@dataclass
class LSTMConfig(BaseConfig):
    embed_dim: int = option(128, min=1)
    hidden: int = option(384, min=1)
    n_layers: int = option(2, min=1)
    dropout: float = option(0.0, min=0.0, below=1.0)


@register_model("lstm")
class LSTM(LanguageModel):
    Config = LSTMConfig
    description = "embedding -> multi-layer LSTM -> linear head (recurrent baseline)"
    debug: ClassVar[dict] = {"embed_dim": 16, "hidden": 32}
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

    def run_lstm(self, x: torch.Tensor, hx=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The LSTM; on the CPU always in float32, even under bfloat16 autocast (as `layers.attend`).

        oneDNN has no bfloat16 LSTM on CPUs without native bfloat16 (AVX2 only): under autocast it
        fails with "could not create a primitive descriptor for the LSTM forward propagation
        primitive". The output comes back in x's dtype; the state `hx` stays float32.
        """
        if x.device.type != "cpu":
            return self.lstm(x, hx)
        with torch.autocast("cpu", enabled=False):
            output, hx = self.lstm(x.float(), hx)
        return output.type_as(x), hx

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output, _ = self.run_lstm(self.input(tokens))
        return self.head(output)

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        output, hidden = self.run_lstm(self.input(tokens, state))
        state.caches["lstm"] = batch_first(hidden)
        return self.head(output[:, -1])

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        output, hidden = self.run_lstm(self.input.step(tokens, state), layers_first(state.caches["lstm"]))
        state.caches["lstm"] = batch_first(hidden)
        return self.head(output[:, -1])


def batch_first(hidden: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """nn.LSTM's (h, c), each [layers, B, H], as one [B, 2, layers, H] tensor: a decode state's caches are
    batch-first, so rows of a batch can be selected and joined like any other model's."""
    return torch.stack(hidden, dim=1).transpose(0, 2)


def layers_first(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, c = cache.transpose(0, 2).contiguous().unbind(1)
    return h.contiguous(), c.contiguous()
