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
from .kgram_cnn import ACTIVATIONS, ConvBlock, ConvStack, KgramCNNConfig
from .kgram_mlp import KgramHead
from .layers import AttentionFields, KVCache, TransformerBlock, make_norm, soft_cap
from .processors import TokenInput
from .registry import register_model


@dataclass
class PlainConvConfig(KgramCNNConfig):
    """The hybrids' conv blocks keep the plain layout by default: width 192, GELU, no MLP (`mlp_ratio` opts in)."""

    width: int = option(192, min=1)
    activation: str = option("gelu", choices=ACTIVATIONS)
    mlp_ratio: float = option(0.0, min=0.0)


@dataclass
class CNNAttentionConfig(AttentionFields, PlainConvConfig):
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
                first = not any(isinstance(layer, TransformerBlock) for layer in layers)
                layers.append(TransformerBlock(config, mixes_values=config.value_residual and not first))
        self.layers = nn.ModuleList(layers)
        self.norm = make_norm(config.norm, config.width)
        self.head = nn.Linear(config.width, config.vocab_size)
        if config.zero_init:
            for layer in self.layers:
                layer.zero_outputs()

    def _layers(self, x: torch.Tensor, state=None, stepping: bool = False) -> torch.Tensor:
        """x [B, T, C] through the layers; with a decode `state`, a prefill (filling its caches) or a step."""
        first_values = None
        for i, layer in enumerate(self.layers):
            key = f"layer{i}"
            if isinstance(layer, ConvBlock):
                h = x.transpose(1, 2)
                h = layer.step(h, state.caches, key) if stepping else layer(h, None if state is None else state.caches, key)
                x = h.transpose(1, 2)
                continue
            cache, offset = None, 0
            if state is not None:
                if not stepping:
                    state.caches[key] = KVCache(self.config.context)
                cache, offset = state.caches[key], state.pos if stepping else 0
            x, values = layer(x, cache, offset, first_values)
            first_values = values if first_values is None else first_values
        return x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return soft_cap(self.head(self.norm(x)), self.config.softcap)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._logits(self._layers(self.input(tokens)))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self._logits(self._layers(self.input(tokens, state), state)[:, -1])

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self._logits(self._layers(self.input.step(tokens, state), state, stepping=True)[:, -1])


@dataclass
class CNNMLPConfig(PlainConvConfig):
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
