"""K-gram MLP (Bengio et al. 2003): the previous k token embeddings, concatenated, through an MLP.

Position t sees exactly tokens t-k+1..t, so the model is causal by construction; the windows of all
positions are built at once with `unfold`, so training has no Python loop over positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import BaseConfig, LanguageModel
from .processors import TokenInput, kgram_window, tail
from .registry import register_model


@dataclass
class KgramMLPConfig(BaseConfig):
    k: int = 16
    embed_dim: int = 32
    hidden: int = 512
    n_layers: int = 2
    dropout: float = 0.1
    layer_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("k", "embed_dim", "hidden", "n_layers")


class KgramHead(nn.Module):
    """An MLP over the last k input vectors, to logits; the decoding state is the last k-1 vectors.

    Shared by `kgram_mlp` (over token embeddings) and `cnn_mlp` (over CNN features).
    """

    def __init__(self, k: int, in_dim: int, hidden: int, n_layers: int, vocab_size: int, dropout: float,
                 layer_norm: bool = False):
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        width = k * in_dim
        for _ in range(n_layers):
            layers.append(nn.Linear(width, hidden))
            if layer_norm:
                layers.append(nn.LayerNorm(hidden))
            layers += [nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, vocab_size)

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
    debug = {"k": 4, "embed_dim": 8, "hidden": 32}
    width_field = "hidden"

    def __init__(self, config: KgramMLPConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.embed_dim)
        self.kgram = KgramHead(config.k, config.embed_dim, config.hidden, config.n_layers, config.vocab_size,
                               config.dropout, config.layer_norm)

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.kgram(self.input(tokens))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.prefill(self.input(tokens, state), state.caches)

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.step(self.input.step(tokens, state), state.caches)
