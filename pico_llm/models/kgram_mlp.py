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
        for field in ("k", "embed_dim", "hidden", "n_layers"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")


@register_model("kgram_mlp")
class KgramMLP(LanguageModel):
    Config = KgramMLPConfig
    description = "Bengio-style MLP over the concatenated embeddings of the last k tokens"
    debug = {"k": 4, "embed_dim": 8, "hidden": 32}
    width_field = "hidden"

    def __init__(self, config: KgramMLPConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.embed_dim)
        layers: list[nn.Module] = []
        width = config.k * config.embed_dim
        for _ in range(config.n_layers):
            layers.append(nn.Linear(width, config.hidden))
            if config.layer_norm:
                layers.append(nn.LayerNorm(config.hidden))
            layers += [nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, config.vocab_size)

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        windows = kgram_window(self.input(tokens), self.config.k)
        return self.head(self.mlp(windows))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        """Decoding state: the embeddings of the last k-1 tokens."""
        x = self.input(tokens, state)
        state.caches["window"] = tail(x, self.config.k - 1)
        return self.head(self.mlp(tail(x, self.config.k).flatten(1)))

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        window = torch.cat([state.caches["window"], self.input.step(tokens, state)], dim=1)
        state.caches["window"] = window[:, 1:]
        return self.head(self.mlp(window.flatten(1)))
