"""Decoder-only transformer in the GPT mould, with the modern defaults small models benefit from.

Pre-norm blocks (RMSNorm, LayerNorm selectable), rotary positions (learned absolute selectable),
attention through `scaled_dot_product_attention` with the causal flag, a SwiGLU, GELU or ReLU² MLP,
tied input/output embeddings and GPT-2 initialisation (residual projections scaled by 1/sqrt(2·layers)).

The modded-nanogpt speedrun's architecture changes are options (AttentionFields: `qk_norm`,
`zero_init`, `value_residual`, `softcap`; here `tie_embeddings` and `unet`): U-net skips add the
output of block i of the first half, times a learnt weight (from 1), to the input of block n-1-i
of the second half, so late blocks see early features directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import option
from .base import BaseConfig, LanguageModel
from .layers import AttentionFields, KVCache, TransformerBlock, make_norm, soft_cap
from .processors import TokenInput
from .registry import register_model


@dataclass
class TransformerConfig(AttentionFields, BaseConfig):
    n_layer: int = option(4, min=1)
    n_embd: int = option(128, min=1)
    tie_embeddings: bool = True
    unet: bool = False

    dim_field = "n_embd"


def init_gpt_style(model: nn.Module, n_layer: int) -> None:
    """Normal(0, 0.02) weights, zero biases; output projections of residual branches scaled down."""
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(param)
        elif param.dim() >= 2:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("proj.weight", "down.weight")) else 0.02
            nn.init.normal_(param, mean=0.0, std=std)


@register_model("transformer")
class Transformer(LanguageModel):
    Config = TransformerConfig
    description = "decoder-only transformer: RoPE, RMSNorm, SwiGLU, fused causal attention, tied embeddings"
    debug: ClassVar[dict] = {"n_layer": 2, "n_head": 2, "n_embd": 32}
    width_field = "n_embd"

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.n_embd, config.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(config, mixes_values=config.value_residual and i > 0)
                                    for i in range(config.n_layer))
        self.skip_weights = nn.Parameter(torch.ones(config.n_layer // 2)) if config.unet else None
        self.norm = make_norm(config.norm, config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_gpt_style(self, config.n_layer)
        if config.zero_init:
            for block in self.blocks:
                block.zero_outputs()
        if config.tie_embeddings:
            self.head.weight = self.input.embed.weight

    def flops_per_token(self) -> float:
        """6·N for the weights plus attention's 12·layers·width·context (nanoGPT / PaLM estimate)."""
        cfg = self.config
        return 6.0 * self.num_params() + 12.0 * cfg.n_layer * cfg.n_embd * cfg.context

    def _blocks(self, x: torch.Tensor, caches: dict | None = None, offset: int | torch.Tensor = 0) -> torch.Tensor:
        """The blocks in order, with the first layer's values and the U-net skips passed along."""
        first_values, skips = None, []
        decoder_start = len(self.blocks) - len(self.skip_weights) if self.skip_weights is not None else len(self.blocks)
        for i, block in enumerate(self.blocks):
            if i >= decoder_start:
                x = x + self.skip_weights[i - decoder_start] * skips.pop()
            x, values = block(x, None if caches is None else caches[f"attn{i}"], offset, first_values)
            first_values = values if first_values is None else first_values
            if self.skip_weights is not None and i < len(self.skip_weights):
                skips.append(x)
        return x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return soft_cap(self.head(self.norm(x)), self.config.softcap)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._logits(self._blocks(self.input(tokens)))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input(tokens, state)
        for i in range(len(self.blocks)):
            state.caches[f"attn{i}"] = KVCache(self.config.context)
        return self._logits(self._blocks(x, state.caches, 0)[:, -1])

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self._logits(self._blocks(self.input.step(tokens, state), state.caches, state.pos)[:, -1])
