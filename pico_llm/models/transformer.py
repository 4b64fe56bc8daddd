"""Decoder-only transformer in the GPT mould, with the modern defaults small models benefit from.

Pre-norm blocks (RMSNorm, LayerNorm selectable), rotary positions (learned absolute selectable),
attention through `scaled_dot_product_attention` with the causal flag, a SwiGLU or GELU MLP, tied
input/output embeddings and GPT-2 initialisation (residual projections scaled by 1/sqrt(2·layers)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import option
from .base import BaseConfig, LanguageModel
from .layers import AttentionFields, KVCache, TransformerBlock, make_norm
from .processors import TokenInput
from .registry import register_model


@dataclass
class TransformerConfig(AttentionFields, BaseConfig):
    n_layer: int = option(4, min=1)
    n_embd: int = option(128, min=1)
    tie_embeddings: bool = True

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
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer))
        self.norm = make_norm(config.norm, config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_gpt_style(self, config.n_layer)
        if config.tie_embeddings:
            self.head.weight = self.input.embed.weight

    def flops_per_token(self) -> float:
        """6·N for the weights plus attention's 12·layers·width·context (nanoGPT / PaLM estimate)."""
        cfg = self.config
        return 6.0 * self.num_params() + 12.0 * cfg.n_layer * cfg.n_embd * cfg.context

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.input(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input(tokens, state)
        for i, block in enumerate(self.blocks):
            state.caches[f"attn{i}"] = KVCache(self.config.context)
            x = block(x, state.caches[f"attn{i}"], 0)
        return self.head(self.norm(x[:, -1]))

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input.step(tokens, state)
        for i, block in enumerate(self.blocks):
            x = block(x, state.caches[f"attn{i}"], state.pos)
        return self.head(self.norm(x[:, -1]))
