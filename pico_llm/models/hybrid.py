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

from .base import LanguageModel
from .kgram_cnn import ConvBlock, ConvStack, KgramCNNConfig
from .kgram_mlp import KgramHead
from .layers import ATTENTION_POSITIONS, KVCache, TransformerBlock, check_attention_fields, make_norm
from .processors import TokenInput
from .registry import register_model


@dataclass
class CNNAttentionConfig(KgramCNNConfig):
    n_layers: int = 6
    attention_every: int = 3
    n_head: int = 4
    norm: str = "rmsnorm"
    mlp: str = "swiglu"
    pos_embedding: str = "rotary"

    positions: ClassVar[tuple[str, ...]] = ATTENTION_POSITIONS

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("attention_every")
        check_attention_fields("width", self.width, self.n_head, self.norm, self.mlp, self.pos_embedding)


@register_model("cnn_attention")
class CNNAttention(LanguageModel):
    Config = CNNAttentionConfig
    description = "dilated causal CNN blocks with a transformer block every N layers (local + long-range)"
    debug = {"width": 32, "n_layers": 4, "attention_every": 2, "n_head": 2}
    width_field = "width"

    def __init__(self, config: CNNAttentionConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.width, config.dropout)
        rotary = config.pos_embedding == "rotary"
        layers: list[nn.Module] = []
        for i in range(config.n_layers):
            layers.append(ConvBlock(config, config.dilation(i)))
            if (i + 1) % config.attention_every == 0:
                layers.append(
                    TransformerBlock(config.width, config.n_head, config.context, config.norm, config.mlp, config.dropout, rotary)
                )
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
    n_layers: int = 4
    k: int = 8
    hidden: int = 512
    mlp_layers: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("k", "hidden", "mlp_layers")


@register_model("cnn_mlp")
class CNNMLP(LanguageModel):
    Config = CNNMLPConfig
    description = "K-gram CNN feature extractor feeding a K-gram MLP head over the last k positions"
    debug = {"width": 16, "n_layers": 2, "k": 3, "hidden": 32}
    width_field = "width"

    def __init__(self, config: CNNMLPConfig):
        super().__init__(config)
        self.features = ConvStack(config)
        self.kgram = KgramHead(config.k, config.width, config.hidden, config.mlp_layers, config.vocab_size, config.dropout)

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.kgram(self.features(tokens).transpose(1, 2))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.prefill(self.features(tokens, state).transpose(1, 2), state.caches)

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.kgram.step(self.features.step(tokens, state).transpose(1, 2), state.caches)
