"""CNN hybrids: convolution for cheap local patterns, plus what a CNN lacks.

- `cnn_attention`: causal dilated conv blocks (the kgram_cnn block) with a transformer block every
  `attention_every` layers. Convolutions model spelling and short-range syntax at a fraction of
  attention's cost; the sparse attention layers add content-based long-range recall (names, quotes,
  repeated phrases) that a fixed receptive field cannot reach.
- `cnn_mlp`: a K-gram CNN feature extractor feeding a K-gram MLP head: the MLP sees the last `k`
  positions of CNN features instead of raw embeddings, so each of its k inputs already summarises a
  dilated neighbourhood; a cheap way to widen an MLP's view without a long k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import option
from .base import LanguageModel
from .kgram_cnn import ConvBlock, ConvStack, KgramCNNConfig
from .kgram_mlp import KgramHead
from .layers import AttentionFields, KVCache, TransformerBlock, make_norm
from .processors import TokenInput
from .registry import register_model


@dataclass
class CNNAttentionConfig(AttentionFields, KgramCNNConfig):
    n_layers: int = option(6, min=1)
    attention_every: int = option(3, min=1)

    dim_field = "width"


@register_model("cnn_attention")
class CNNAttention(LanguageModel):
    Config = CNNAttentionConfig
    description = "dilated causal CNN blocks with a transformer block every N layers (local + long-range)"
    debug: ClassVar[dict] = {"width": 32, "n_layers": 4, "attention_every": 2, "n_head": 2}
    width_field = "width"

    def __init__(self, config: CNNAttentionConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.width, config.dropout)
        layers: list[nn.Module] = []
        for i in range(config.n_layers):
            layers.append(ConvBlock(config, config.dilation(i)))
            if (i + 1) % config.attention_every == 0:
                layers.append(TransformerBlock(config))
        self.layers = nn.ModuleList(layers)
        self.norm = make_norm(config.norm, config.width)
        self.head = nn.Linear(config.width, config.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.input(tokens)  # [B, T, C]
        for layer in self.layers:
            if isinstance(layer, ConvBlock):
                x = layer(x.transpose(1, 2)).transpose(1, 2)
            else:
                x = layer(x)
        return self.head(self.norm(x))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input(tokens, state)
        for i, layer in enumerate(self.layers):
            key = f"layer{i}"
            if isinstance(layer, ConvBlock):
                x = layer(x.transpose(1, 2), state.caches, key).transpose(1, 2)
            else:
                state.caches[key] = KVCache(self.config.context)
                x = layer(x, state.caches[key], 0)
        return self.head(self.norm(x[:, -1]))

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input.step(tokens, state)
        for i, layer in enumerate(self.layers):
            key = f"layer{i}"
            if isinstance(layer, ConvBlock):
                x = layer.step(x.transpose(1, 2), state.caches, key).transpose(1, 2)
            else:
                x = layer(x, state.caches[key], state.pos)
        return self.head(self.norm(x[:, -1]))


@dataclass
class CNNMLPConfig(KgramCNNConfig):
    """`n_layers` and `layer_norm` are the conv stack's; the k-gram head has `mlp_layers` and no norm."""

    n_layers: int = option(4, min=1)
    k: int = option(8, min=1)
    hidden: int = option(512, min=1)
    mlp_layers: int = option(1, min=1)

    head_layer_norm: ClassVar[bool] = False

    @property
    def head_layers(self) -> int:
        return self.mlp_layers


@register_model("cnn_mlp")
class CNNMLP(LanguageModel):
    Config = CNNMLPConfig
    description = "K-gram CNN feature extractor feeding a K-gram MLP head over the last k positions"
    debug: ClassVar[dict] = {"width": 16, "n_layers": 2, "k": 3, "hidden": 32}
    width_field = "width"

    def __init__(self, config: CNNMLPConfig):
        super().__init__(config)
        self.features = ConvStack(config)
        self.kgram = KgramHead(config, config.width)

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.kgram(self.features(tokens).transpose(1, 2))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.prefill(self.features(tokens, state).transpose(1, 2), state.caches)

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.step(self.features.step(tokens, state).transpose(1, 2), state.caches)
