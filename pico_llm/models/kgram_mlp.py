"""K-gram MLP (Bengio et al. 2003): the previous k token embeddings, concatenated, through an MLP.

Position t sees exactly tokens t-k+1..t, so the model is causal by construction; the windows of all
positions are built at once with `unfold`, so training has no Python loop over positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import option
from .base import BaseConfig, LanguageModel
from .dropout import Dropout
from .processors import TokenInput, kgram_window, tail
from .registry import register_model


@dataclass
class KgramMLPConfig(BaseConfig):
    k: int = option(16, min=1)
    embed_dim: int = option(32, min=1)
    hidden: int = option(512, min=1)
    n_layers: int = option(2, min=1)
    dropout: float = option(0.1, min=0.0, below=1.0)
    layer_norm: bool = False

    @property
    def head_layers(self) -> int:
        return self.n_layers

    @property
    def head_layer_norm(self) -> bool:
        return self.layer_norm


class KgramHead(nn.Module):
    """An MLP over the last k input vectors, to logits; the decoding state is the last k-1 vectors.

    Shared by `kgram_mlp` (over token embeddings) and `cnn_mlp` (over CNN features of width
    `in_dim`). It reads `k`, `hidden`, `dropout` and `vocab_size` from the config, and its depth and
    norm from `head_layers` and `head_layer_norm`: properties, because cnn_mlp's `n_layers` and
    `layer_norm` fields belong to its conv stack, and saved configs keep their field names.
    """

    def __init__(self, config, in_dim: int):
        super().__init__()
        self.k = config.k
        layers: list[nn.Module] = []
        width = config.k * in_dim
        for _ in range(config.head_layers):
            layers.append(nn.Linear(width, config.hidden))
            if config.head_layer_norm:
                layers.append(nn.LayerNorm(config.hidden))
            layers += [nn.GELU(), Dropout(config.dropout)]
            width = config.hidden
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, config.vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, D] -> logits [B, T, V], every position from its own window."""
        return self.head(self.mlp(kgram_window(x, self.k)))

    def prefill(self, x: torch.Tensor, caches: dict) -> torch.Tensor:
        caches["window"] = tail(x, self.k - 1)
        return self.head(self.mlp(tail(x, self.k).flatten(1)))

    def step(self, x: torch.Tensor, caches: dict) -> torch.Tensor:
        """x: [B, 1, D], the newest vector; logits [B, V]."""
        window = torch.cat([caches["window"], x], dim=1)
        caches["window"] = window[:, 1:]
        return self.head(self.mlp(window.flatten(1)))


@register_model("kgram_mlp")
class KgramMLP(LanguageModel):
    Config = KgramMLPConfig
    description = "Bengio-style MLP over the concatenated embeddings of the last k tokens"
    debug: ClassVar[dict] = {"k": 4, "embed_dim": 8, "hidden": 32}
    width_field = "hidden"

    def __init__(self, config: KgramMLPConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.embed_dim)
        self.kgram = KgramHead(config, config.embed_dim)

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.kgram(self.input(tokens))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.prefill(self.input(tokens, state), state.caches)

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.step(self.input.step(tokens, state), state.caches)
