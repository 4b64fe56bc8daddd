"""Gated linear attention (GLA, Yang et al. 2023): linear attention whose state forgets, per key channel,
at a rate the input decides.

Per head, the state S is a key_dim × value_dim matrix: S_t = diag(α_t)·S_{t-1} + k_tᵀ v_t and
o_t = q_t·S_t, where the gate α_t ∈ (0, 1)^key_dim comes from the token (a low-rank projection,
sigmoid, then ^(1/τ) so that it starts close to 1: long memory). The output is normalised per head,
gated by SiLU of another projection, and projected back; a SwiGLU MLP follows, both pre-norm with
residual connections, as in a transformer block.

Training uses the chunkwise-parallel form: inside a chunk, a masked attention-like product whose
decays exp(b_t − b_s) (b the cumulative log-gates, s ≤ t) are all ≤ 1; across chunks the state
passes on, one matrix product per chunk. Decoding keeps S: constant size, constant cost per token,
streaming past the context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..errors import PicoError
from .base import BaseConfig, LanguageModel
from .dropout import Dropout
from .layers import MLP, MLPS, RMSNorm
from .processors import TokenInput
from .registry import register_model


GATE_FLOOR = -5.0  # log-gates stay above it: a channel keeps at least e^-5 (0.7%) a step, and chunk/2 steps of
MAX_CHUNK = 24  # it (-60) still fit float32's exponent range when the decays are split (exp(±60) ~ 1e26)


@dataclass
class GLAConfig(BaseConfig):
    d_model: int = option(192, min=1)
    n_layers: int = option(4, min=1)
    n_head: int = option(4, min=1)
    key_ratio: float = option(0.5, above=0.0, max=4.0)  # key_dim = key_ratio × d_model over the heads
    gate_rank: int = option(16, min=1)
    gate_temperature: float = option(16.0, above=0.0)
    chunk: int = option(16, min=1, max=MAX_CHUNK)
    mlp: str = option("swiglu", choices=MLPS)
    dropout: float = option(0.0, min=0.0, below=1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_head or self.key_dim % self.n_head:
            raise PicoError(f"`d_model` {self.d_model} and `key_ratio` × `d_model` ({self.key_dim}) must be "
                            f"divisible by `n_head` {self.n_head}")

    @property
    def dim(self) -> int:  # what the shared MLP block reads
        return self.d_model

    @property
    def key_dim(self) -> int:
        return int(round(self.key_ratio * self.d_model))


def chunked_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate: torch.Tensor, chunk: int):
    """q, k, log_gate [B, H, T, K], v [B, H, T, V] -> outputs [B, H, T, V] and the final state [B, H, K, V]."""
    batch, heads, length, key_dim = q.shape
    pad = -length % chunk
    q, k, v, log_gate = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, log_gate))
    shape = (batch, heads, -1, chunk)
    q, k, v, log_gate = (t.reshape(*shape, t.shape[-1]) for t in (q, k, v, log_gate))  # [B, H, c, L, d]
    b = log_gate.cumsum(-2)  # cumulative log-gates inside each chunk, ≤ 0
    # inside a chunk: A[t, s] = sum_d q_td k_sd exp(b_td - b_sd) for s <= t, as one matmul: the decays are split
    # at the chunk's middle, so each factor's exponent is at most chunk/2 × GATE_FLOOR in size (no overflow)
    middle = b[..., chunk // 2 : chunk // 2 + 1, :]
    within = (q * (b - middle).exp()) @ (k * (middle - b).exp()).transpose(-1, -2)  # [B, H, c, L, L]
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    outputs = within.masked_fill(~causal, 0) @ v
    state = q.new_zeros(batch, heads, key_dim, v.shape[-1])
    carried = []
    for i in range(q.shape[2]):  # across chunks: the state entering chunk i, then updated by it
        carried.append((q[:, :, i] * b[:, :, i].exp()) @ state)
        to_end = (b[:, :, i, -1:] - b[:, :, i]).exp()  # [B, H, L, K]
        state = state * b[:, :, i, -1].exp()[..., None] + (k[:, :, i] * to_end).transpose(-1, -2) @ v[:, :, i]
    outputs = outputs + torch.stack(carried, dim=2)
    return outputs.flatten(2, 3)[:, :, :length], state


class GatedLinearAttention(nn.Module):
    def __init__(self, config: GLAConfig):
        super().__init__()
        self.config = config
        d, heads = config.d_model, config.n_head
        self.head_key, self.head_value = config.key_dim // heads, d // heads
        self.q = nn.Linear(d, config.key_dim, bias=False)
        self.k = nn.Linear(d, config.key_dim, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.gate = nn.Sequential(nn.Linear(d, config.gate_rank, bias=False), nn.Linear(config.gate_rank, config.key_dim))
        self.output_gate = nn.Linear(d, d, bias=False)
        self.head_norm = RMSNorm(self.head_value, eps=1e-5)
        self.proj = nn.Linear(d, d, bias=False)

    def _projections(self, x: torch.Tensor):
        """q, k (× key_dim^-½), v and the log-gates, each [B, H, T, d], in float32."""
        heads = self.config.n_head

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.float().unflatten(-1, (heads, -1)).transpose(1, 2)

        log_gate = (F.logsigmoid(self.gate(x).float()) / self.config.gate_temperature).clamp(min=GATE_FLOOR)
        return split(self.q(x)), split(self.k(x)) / math.sqrt(self.head_key), split(self.v(x)), split(log_gate)

    def _out(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        o = self.head_norm(o.type_as(x)).transpose(1, 2).flatten(-2)  # [B, T, D]
        return self.proj(o * F.silu(self.output_gate(x)))

    def forward(self, x: torch.Tensor, caches: dict | None = None, key: str = "") -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # decays and cumulative sums in float32
            o, state = chunked_gla(*self._projections(x), self.config.chunk)
        if caches is not None:
            caches[key] = state
        return self._out(o, x)

    def step(self, x: torch.Tensor, caches: dict, key: str) -> torch.Tensor:
        """x [B, 1, D]: one token from the state, at a cost that does not grow with the tokens before it."""
        with torch.autocast(x.device.type, enabled=False):
            q, k, v, log_gate = (t[:, :, 0] for t in self._projections(x))  # [B, H, d]
            state = caches[key] * log_gate.exp()[..., None] + k[..., None] * v[..., None, :]
            caches[key] = state
            o = (q[:, :, None] @ state)  # [B, H, 1, V]
        return self._out(o, x)


class GLABlock(nn.Module):
    def __init__(self, config: GLAConfig):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(config.d_model), RMSNorm(config.d_model)
        self.attn = GatedLinearAttention(config)
        self.mlp = MLP(config)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, caches: dict | None = None, key: str = "") -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), caches, key))
        return x + self.mlp(self.mlp_norm(x))

    def step(self, x: torch.Tensor, caches: dict, key: str) -> torch.Tensor:
        x = x + self.attn.step(self.attn_norm(x), caches, key)
        return x + self.mlp(self.mlp_norm(x))


@register_model("gla")
class GLA(LanguageModel):
    Config = GLAConfig
    description = "gated linear attention: per-channel data-dependent forgetting, chunkwise training, O(1) decoding"
    debug: ClassVar[dict] = {"d_model": 32, "n_layers": 2, "n_head": 2, "gate_rank": 4, "chunk": 8}
    width_field = "d_model"

    def __init__(self, config: GLAConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.d_model, config.dropout)
        self.blocks = nn.ModuleList(GLABlock(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        nn.init.normal_(self.input.embed.weight, std=0.02)
        self.head.weight = self.input.embed.weight

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.input(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input(tokens, state)
        for i, block in enumerate(self.blocks):
            x = block(x, state.caches, f"state{i}")
        return self.head(self.norm(x[:, -1]))

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input.step(tokens, state)
        for i, block in enumerate(self.blocks):
            x = block.step(x, state.caches, f"state{i}")
        return self.head(self.norm(x[:, -1]))
