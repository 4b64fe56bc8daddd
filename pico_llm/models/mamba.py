"""Mamba: a selective state-space model (Gu & Dao 2023), in the scalar-decay form of Mamba-2 (Dao & Gu 2024).

Each block mixes tokens through a recurrence h_t = exp(Δ_t·A)·h_{t-1} + Δ_t·x_t ⊗ B_t, y_t = h_t·C_t + D·x_t,
where the step size Δ, the input matrix B and the output matrix C depend on the input (that is what
makes it "selective": the model decides, token by token, what to keep and what to forget). Around it:
an input projection, a short causal depthwise convolution, SiLU, a SiLU gate, an RMSNorm and a
residual connection. Every head has its own decay A; its state is head_dim × d_state numbers.

Training uses the chunked ("state space dual") form: inside a chunk of `chunk` tokens the recurrence
is a masked, decayed attention-like product (matmuls); across chunks the states pass on, one small
product per chunk. Every exponent is a difference of cumulative log-decays that is ≤ 0, so nothing
overflows. Decoding keeps, per layer, the state and the last d_conv - 1 convolution inputs: the cost
of a token does not depend on how many came before, and the model streams past its context.
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
from .layers import RMSNorm
from .processors import TokenInput, tail
from .registry import register_model


@dataclass
class MambaConfig(BaseConfig):
    d_model: int = option(192, min=1)
    n_layers: int = option(4, min=1)
    d_state: int = option(16, min=1)
    expand: int = option(2, min=1)
    head_dim: int = option(32, min=1)
    d_conv: int = option(4, min=1)
    chunk: int = option(32, min=1)
    dropout: float = option(0.0, min=0.0, below=1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inner % self.head_dim:
            raise PicoError(f"`expand` × `d_model` ({self.inner}) must be divisible by `head_dim` {self.head_dim}")

    @property
    def inner(self) -> int:
        return self.expand * self.d_model

    @property
    def n_heads(self) -> int:
        return self.inner // self.head_dim


def segment_sums(x: torch.Tensor) -> torch.Tensor:
    """[..., L] -> [..., L, L]: out[t, s] = x[s+1] + ... + x[t] for s ≤ t (0 on the diagonal), -inf above it."""
    length = x.shape[-1]
    cumulative = x.cumsum(-1)
    sums = cumulative[..., :, None] - cumulative[..., None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    return sums.masked_fill(~causal, -math.inf)


def chunked_scan(x: torch.Tensor, log_decay: torch.Tensor, b: torch.Tensor, c: torch.Tensor, chunk: int):
    """The selective scan in chunks. x [B, T, H, P] (already × Δ), log_decay [B, T, H] (Δ·A ≤ 0),
    b and c [B, T, N] (shared by the heads). Returns y [B, T, H, P] and the final state [B, H, P, N]."""
    batch, length, heads, p = x.shape
    pad = -length % chunk
    x, log_decay, b, c = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, log_decay, b, c))
    n_chunks = x.shape[1] // chunk
    x = x.view(batch, n_chunks, chunk, heads, p).permute(0, 3, 1, 2, 4)  # [B, H, c, L, P]
    log_decay = log_decay.view(batch, n_chunks, chunk, heads).permute(0, 3, 1, 2)  # [B, H, c, L]
    b, c = b.view(batch, n_chunks, chunk, -1), c.view(batch, n_chunks, chunk, -1)  # [B, c, L, N]
    cumulative = log_decay.cumsum(-1)
    # inside each chunk: y_t = sum_{s<=t} (c_t . b_s) exp(decay from s to t) x_s
    within = (c @ b.transpose(-1, -2))[:, None] * segment_sums(log_decay).exp()  # [B, H, c, L, L]
    y = within @ x
    # each chunk's state at its end, then carried across chunks
    to_end = (cumulative[..., -1:] - cumulative).exp()  # [B, H, c, L]
    states = (x * to_end[..., None]).transpose(-1, -2) @ b[:, None]  # [B, H, c, P, N]
    states = torch.cat([states.new_zeros(batch, heads, 1, p, states.shape[-1]), states], dim=2)
    carry = segment_sums(F.pad(cumulative[..., -1], (1, 0))).exp()  # [B, H, c+1, c+1]
    states = (carry @ states.flatten(-2)).view(batch, heads, n_chunks + 1, p, -1)
    # what the states entering each chunk add to its outputs
    y = y + (c[:, None] @ states[:, :, :-1].transpose(-1, -2)) * cumulative.exp()[..., None]
    y = y.permute(0, 2, 3, 1, 4).reshape(batch, n_chunks * chunk, heads, p)[:, :length]
    return y, states[:, :, -1]


class MambaMixer(nn.Module):
    """in_proj -> (gate z | conv input | Δ); depthwise causal conv, SiLU; selective scan; gated RMSNorm; out_proj."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        inner, state, heads = config.inner, config.d_state, config.n_heads
        self.conv_dim = inner + 2 * state
        self.in_proj = nn.Linear(config.d_model, inner + self.conv_dim + heads, bias=False)
        self.conv = nn.Conv1d(self.conv_dim, self.conv_dim, config.d_conv, groups=self.conv_dim)
        self.log_a = nn.Parameter(torch.log(torch.linspace(1, 16, heads)))  # A = -exp(log_a): decays 1..16
        step = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), heads))  # Δ from 0.001 to 0.1
        self.dt_bias = nn.Parameter(step + torch.log(-torch.expm1(-step)))  # inverse softplus
        self.skip = nn.Parameter(torch.ones(heads))  # D
        self.norm = RMSNorm(inner, eps=1e-5)
        self.out_proj = nn.Linear(inner, config.d_model, bias=False)

    def _split(self, projected: torch.Tensor):
        inner = self.config.inner
        return projected.split([inner, self.conv_dim, self.config.n_heads], dim=-1)

    def _scan_inputs(self, conv_out: torch.Tensor, dt: torch.Tensor):
        """x (× Δ), log decay Δ·A, b, c and x itself from the convolved features and the raw Δ."""
        cfg = self.config
        x, b, c = F.silu(conv_out).split([cfg.inner, cfg.d_state, cfg.d_state], dim=-1)
        dt = F.softplus(dt + self.dt_bias)
        x = x.unflatten(-1, (cfg.n_heads, cfg.head_dim))
        return x * dt[..., None], dt * -self.log_a.exp(), b, c, x

    def _out(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (y + x * self.skip[:, None]).flatten(-2)
        return self.out_proj(self.norm(y * F.silu(z)))

    def forward(self, h: torch.Tensor, caches: dict | None = None, key: str = "") -> torch.Tensor:
        """h [B, T, D]; with `caches`, keep the state and the conv inputs for decoding."""
        z, conv_in, dt = self._split(self.in_proj(h))
        conv_out = self.conv(F.pad(conv_in.transpose(1, 2), (self.config.d_conv - 1, 0))).transpose(1, 2)
        with torch.autocast(h.device.type, enabled=False):  # decays and cumulative sums in float32
            scan_x, log_decay, b, c, x = (t.float() for t in self._scan_inputs(conv_out.float(), dt.float()))
            y, state = chunked_scan(scan_x, log_decay, b, c, self.config.chunk)
        if caches is not None:
            caches[key + "state"] = state
            caches[key + "conv"] = tail(conv_in.transpose(1, 2), self.config.d_conv - 1, dim=2)
        return self._out(y.type_as(h), x.type_as(h), z)

    def step(self, h: torch.Tensor, caches: dict, key: str) -> torch.Tensor:
        """h [B, 1, D]: one token, from the state and the conv buffer; O(1) in the tokens so far."""
        z, conv_in, dt = self._split(self.in_proj(h))
        window = torch.cat([caches[key + "conv"], conv_in.transpose(1, 2)], dim=2)  # [B, C, d_conv]
        caches[key + "conv"] = window[:, :, 1:]
        conv_out = (window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias  # [B, C]
        with torch.autocast(h.device.type, enabled=False):
            scan_x, log_decay, b, c, x = (t.float() for t in self._scan_inputs(conv_out.float(), dt[:, 0].float()))
            state = caches[key + "state"] * log_decay.exp()[..., None, None] + scan_x[..., None] * b[:, None, None, :]
            caches[key + "state"] = state
            y = state @ c[:, None, :, None]  # [B, H, P, 1]
        return self._out(y[..., 0].type_as(h), x.type_as(h), z[:, 0])[:, None]


@register_model("mamba")
class Mamba(LanguageModel):
    Config = MambaConfig
    description = "selective state-space model (Mamba-2 form): input-dependent Δ, B, C, chunked scan, O(1) decoding"
    debug: ClassVar[dict] = {"d_model": 32, "n_layers": 2, "d_state": 8, "head_dim": 16, "chunk": 8}
    width_field = "d_model"
    width_step = 16  # expand 2 × a multiple of 16 divides into 32-wide heads

    def __init__(self, config: MambaConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.d_model, config.dropout)
        self.norms = nn.ModuleList(RMSNorm(config.d_model) for _ in range(config.n_layers))
        self.mixers = nn.ModuleList(MambaMixer(config) for _ in range(config.n_layers))
        self.dropout = Dropout(config.dropout)
        self.norm = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        nn.init.normal_(self.input.embed.weight, std=0.02)
        self.head.weight = self.input.embed.weight

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def _layers(self, x: torch.Tensor, caches: dict | None = None) -> torch.Tensor:
        for i, (norm, mixer) in enumerate(zip(self.norms, self.mixers)):
            x = x + self.dropout(mixer(norm(x), caches, f"layer{i}."))
        return self.head(self.norm(x))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._layers(self.input(tokens))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self._layers(self.input(tokens, state), state.caches)[:, -1]

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        x = self.input.step(tokens, state)
        for i, (norm, mixer) in enumerate(zip(self.norms, self.mixers)):
            x = x + mixer.step(norm(x), state.caches, f"layer{i}.")
        return self.head(self.norm(x))[:, -1]
