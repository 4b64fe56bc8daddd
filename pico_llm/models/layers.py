"""Building blocks shared by the attention models: norms, rotary positions, attention, MLPs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..errors import PicoError
from .dropout import Dropout, keep_mask

NORMS = ("rmsnorm", "layernorm")
MLPS = ("gelu", "swiglu", "relu2")
ATTENTION_POSITIONS = ("rotary", "learned", "sinusoidal", "none")


@dataclass
class AttentionFields:
    """The config fields of every model with transformer blocks, and their checks.

    `TransformerBlock(config)` reads its settings from here (plus `context`), so a new attention
    setting is one field here and its use in a block, whichever models have attention. Mix it in
    before the BaseConfig-derived base, `class C(AttentionFields, BaseConfig)`: its `__post_init__`
    then runs after the per-field checks. `dim_field` names the config's model width (`n_embd`,
    `width`), which stays the field it always was so saved configs still build.
    """

    n_head: int = option(4, min=1)
    norm: str = option("rmsnorm", choices=NORMS)
    mlp: str = option("swiglu", choices=MLPS)
    dropout: float = option(0.0, min=0.0, below=1.0)
    pos_embedding: str = "rotary"
    qk_norm: bool = False  # RMS-normalise queries and keys per head (no weights) before attention
    zero_init: bool = False  # the residual branches' output projections start at zero
    value_residual: bool = False  # every attention layer after the first mixes in the first one's values
    softcap: float = option(0.0, min=0.0)  # logits become softcap·tanh(logits / softcap); 0 is off

    positions: ClassVar[tuple[str, ...]] = ATTENTION_POSITIONS
    dim_field: ClassVar[str]

    @property
    def dim(self) -> int:
        return getattr(self, self.dim_field)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    def __post_init__(self) -> None:
        super().__post_init__()  # BaseConfig's field checks: n_head is a positive whole number from here on
        if self.dim % self.n_head:
            raise PicoError(f"`{self.dim_field}` {self.dim} must be divisible by `n_head` {self.n_head}")
        if self.pos_embedding == "rotary" and self.head_dim % 2:
            raise PicoError(
                f"rotary positions rotate channel pairs, so `{self.dim_field}` / `n_head` must be even, got "
                f"{self.head_dim}; change either, or use another `pos_embedding`"
            )


class RMSNorm(nn.Module):
    """Root-mean-square norm (no mean subtraction, no bias): cheaper than LayerNorm, as good for LMs.

    Training on the CPU goes through `_CPURMSNorm`; elsewhere, and without gradients, `F.rms_norm`.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == self.weight.dtype:
            return _CPURMSNorm.apply(x, self.weight, self.eps)
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class _CPURMSNorm(torch.autograd.Function):
    """y = x·r·w with r = 1/sqrt(mean(x²) + eps), and its backward in four passes over x.

    On the CPU, `F.rms_norm` is a chain of small kernels whose autograd graph saves and recomputes
    several tensors of x's size: forward + backward took 98 ms at nanoGPT's [64, 256, 384]
    activations and 6.0 ms at [32, 128, 128] on an AVX2 EPYC, against 59 and 4.5 ms here
    (BENCHMARKS.md). dL/dx = r·(g·w − x·r²·mean(g·w·x)). Float32 under autocast, as `F.rms_norm`:
    CPU autocast would run `vecdot` in bfloat16.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        rstd = torch.rsqrt(torch.linalg.vecdot(x, x).unsqueeze(-1).div_(x.shape[-1]).add_(eps))
        ctx.save_for_backward(x, rstd, weight)
        return x * rstd * weight

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        x, rstd, weight = ctx.saved_tensors
        grad_weight = (grad * x * rstd).flatten(0, -2).sum(0) if ctx.needs_input_grad[1] else None
        scaled = grad * weight
        dot = torch.linalg.vecdot(scaled, x).unsqueeze(-1)
        grad_x = scaled.mul_(rstd).addcmul_(x, dot * rstd.pow(3), value=-1.0 / x.shape[-1])
        return grad_x, grad_weight, None


def make_norm(kind: str, dim: int) -> nn.Module:
    return RMSNorm(dim) if kind == "rmsnorm" else nn.LayerNorm(dim)


class Rotary(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021): rotates query/key channel pairs by position.

    Each pair (2i, 2i+1) is a complex number multiplied by e^(i·position·θ_i): one complex multiply
    instead of slicing even and odd channels apart and stacking them back, which made the baby
    GPT's training step 9% faster (37.8 against 41.5 ms, BENCHMARKS.md). The rotations are kept as
    real (cos, sin) pairs so that `model.to(dtype)` casts them like any other buffer.
    """

    def __init__(self, head_dim: int, context: int, base: float = 10000.0):
        super().__init__()
        self.base = base  # exporters write it: other tools compute the same rotations from it
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)
        self.register_buffer("rotations", torch.stack((angles.cos(), angles.sin()), dim=-1), persistent=False)
        self.table = torch.view_as_complex(self.rotations)

    def _apply(self, fn, recurse: bool = True):
        module = super()._apply(fn, recurse)
        self.table = torch.view_as_complex(self.rotations.float())  # `.to()` moved or recast the rotations
        return module

    def forward(self, x: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
        """x: [..., B, H, T, head_dim] at positions offset..offset+T-1, or [..., B, H, 1, head_dim] with one
        position per row (`offset` [B]); computed in float32, returned in x's dtype.

        The complex64 table is built once, not per call: a decoding step is bound by its count of small
        kernels (BENCHMARKS.md). It follows the rotations buffer through `.to()`, which would drop
        the imaginary part of a complex buffer cast to a real dtype.
        """
        if isinstance(offset, torch.Tensor):
            rotations = self.table[offset][:, None, None]  # [B, 1, 1, head_dim / 2]
        else:
            rotations = self.table[offset : offset + x.shape[-2]]
        pairs = torch.view_as_complex(x.float().view(*x.shape[:-1], -1, 2))
        rotated = torch.view_as_real(pairs * rotations).view(x.shape)
        return rotated if rotated.dtype == x.dtype else rotated.to(x.dtype)


class KVCache:
    """Preallocated keys and values of one attention layer, [B, H, context, head_dim] each (gpt-fast style).

    Buffers are allocated on the first write, in the dtype the keys arrive in (autocast or not). Rows
    may be at different positions (a server decodes requests that started at different times
    together): a step writes each row's key at its own position and masks what lies beyond it.
    """

    def __init__(self, context: int):
        self.context = context
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def update(self, k: torch.Tensor, v: torch.Tensor, offset: int | torch.Tensor):
        """Write positions offset..offset+T-1 (a prefill), or one position per row (`offset` [B], a step).

        Returns the keys and values up to the furthest position written and the mask [B, 1, 1, L] of
        the positions each row attends to (None when every row attends to all of them).
        """
        if self.keys is None:
            shape = (k.shape[0], k.shape[1], self.context, k.shape[3])
            self.keys, self.values = k.new_zeros(shape), v.new_zeros(shape)
        if isinstance(offset, int):
            end = offset + k.shape[2]
            self.keys[:, :, offset:end] = k
            self.values[:, :, offset:end] = v
            return self.keys[:, :, :end], self.values[:, :, :end], None
        rows = torch.arange(k.shape[0], device=k.device)
        self.keys[rows, :, offset] = k[:, :, 0]
        self.values[rows, :, offset] = v[:, :, 0]
        end = int(offset.max()) + 1
        mask = torch.arange(end, device=k.device) <= offset[:, None]
        return self.keys[:, :, :end], self.values[:, :, :end], mask[:, None, None]

    def select(self, rows: torch.Tensor) -> KVCache:
        cache = KVCache(self.context)
        cache.keys, cache.values = self.keys[rows], self.values[rows]
        return cache

    @staticmethod
    def concat(caches: list[KVCache]) -> KVCache:
        cache = KVCache(caches[0].context)
        cache.keys = torch.cat([c.keys for c in caches])
        cache.values = torch.cat([c.values for c in caches])
        return cache


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, dropout: float = 0.0,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """`scaled_dot_product_attention`; on the CPU always in float32, even under bfloat16 autocast.

    PyTorch's CPU flash-attention backward is 5x slower in bfloat16 than in float32 (13.8 against
    2.7 ms per baby-GPT step, BENCHMARKS.md), which cancelled what bfloat16 matmuls gain. With
    attention (and rotary) in float32, autocast keeps the projections in bfloat16. Dropout on the
    attention probabilities uses `dropout.keep_mask`.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout)
    if torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return attend(q, k, v, causal, dropout, mask)
    q, k, v = q.float(), k.float(), v.float()
    if dropout == 0.0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return _attend_with_dropout(q, k, v, causal, dropout, mask)


def _attend_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, dropout: float,
                         mask: torch.Tensor | None) -> torch.Tensor:
    """Attention with dropout on its probabilities, as PyTorch's CPU math path computes it (the only CPU path
    with dropout), with the mask drawn by `keep_mask`.

    The scale and the mask ride on the score product itself (`baddbmm`'s alpha and the bias it adds),
    which saves two passes over the [batch, heads, T, S] scores forward and two backward: 1.2× on
    this function at nanoGPT's 10.65M shape (BENCHMARKS.md).
    """
    batch, heads, length, width = q.shape
    keys = k.shape[-2]
    bias = _score_bias(length, keys, causal, mask, q.device).expand(batch, heads, length, keys)
    scores = torch.baddbmm(bias.reshape(-1, length, keys), q.reshape(-1, length, width),
                           k.reshape(-1, keys, width).mT, alpha=width**-0.5).view(batch, heads, length, keys)
    keep, dropped = keep_mask(scores.shape, dropout)
    return (torch.where(keep, scores.softmax(dim=-1), 0.0) @ v) * (1.0 / (1.0 - dropped))


def _score_bias(length: int, keys: int, causal: bool, mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """What attention adds to its scores: -inf where a query may not look (causal, or a False in a bool mask)."""
    if causal:
        mask = torch.ones(length, keys, dtype=torch.bool, device=device).tril()
    if mask is None:
        return torch.zeros(length, keys, device=device)
    if mask.dtype != torch.bool:
        return mask.float()
    return torch.zeros(mask.shape, device=device).masked_fill(~mask, float("-inf"))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through PyTorch's fused scaled_dot_product_attention.

    With `qk_norm`, queries and keys are RMS-normalised per head before the rotary positions, which
    bounds the attention logits (the speedrun's QK-norm). With `mixes_values` (the config's
    `value_residual`, for every layer but the first), its values are λ₀·v + λ₁·v₁, v₁ the first
    attention layer's values at the same position, λ learnt from (0.5, 0.5) (ResFormer, Zhou et al. 2024).
    """

    def __init__(self, config: AttentionFields, mixes_values: bool = False):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.proj = nn.Linear(config.dim, config.dim, bias=False)
        self.rotary = Rotary(config.head_dim, config.context) if config.pos_embedding == "rotary" else None
        self.qk_norm = config.qk_norm
        self.value_mix = nn.Parameter(torch.tensor([0.5, 0.5])) if mixes_values else None
        self.dropout = config.dropout
        self.resid_dropout = Dropout(config.dropout)

    def split_heads(self, x: torch.Tensor, offset: int | torch.Tensor = 0,
                    first_values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, dim = x.shape
        qkv = self.qkv(x)
        if qkv.device.type == "cpu":
            qkv = qkv.float()  # see `attend`: on the CPU, everything between the two projections is float32
        qkv = qkv.view(batch, length, 3, self.n_head, dim // self.n_head).permute(2, 0, 3, 1, 4)
        qk, v = qkv[:2], qkv[2]  # queries and keys are normalised and rotated together: half the kernels
        if self.qk_norm:
            qk = F.rms_norm(qk, (qk.shape[-1],))
        if self.rotary is not None:
            qk = self.rotary(qk, offset)
        q, k = qk.unbind(0)
        if self.value_mix is not None:
            v = (self.value_mix[0] * v + self.value_mix[1] * first_values).to(v.dtype)
        return q, k, v

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = y.shape
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(batch, length, -1)))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, offset: int | torch.Tensor = 0,
                first_values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal attention over x; with a cache, a prefill (offset 0) or a one-token step at each row's `offset` [B].

        Returns the output and the values it attended with (the first layer's feed `first_values`).
        """
        q, k, v = self.split_heads(x, offset, first_values)
        values, causal, mask = v, True, None
        if cache is not None:
            k, v, mask = cache.update(k, v, offset)
            causal = isinstance(offset, int) and offset == 0  # a step's query attends to its row's cached past
        y = attend(q, k, v, causal, self.dropout if self.training else 0.0, mask)
        return self.merge_heads(y.type_as(x)), values  # from attend's float32 back to x's dtype (bfloat16 weights)


class MLP(nn.Module):
    """Position-wise feed-forward: GELU or ReLU² (4× wide), or SwiGLU (≈8/3× wide, same parameter count).

    ReLU² (relu(x)², So et al. 2021, the speedrun's MLP) is sparse like ReLU and smooth near zero
    like GELU, and is two cheap kernels where GELU's erf is one expensive one.
    """

    def __init__(self, config: AttentionFields):
        super().__init__()
        dim = config.dim
        self.kind = config.mlp
        hidden = 32 * -(-8 * dim // 3 // 32) if self.kind == "swiglu" else 4 * dim
        self.up = nn.Linear(dim, hidden * (2 if self.kind == "swiglu" else 1), bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.kind == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h)
        return self.dropout(self.down(h))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + attention(norm(x)), then x + mlp(norm(x)).

    `mixes_values`: this block's attention mixes in the first attention layer's values (see
    CausalSelfAttention); `forward` returns the values it used, for the blocks after it.
    """

    def __init__(self, config: AttentionFields, mixes_values: bool = False):
        super().__init__()
        self.attn_norm = make_norm(config.norm, config.dim)
        self.attn = CausalSelfAttention(config, mixes_values)
        self.mlp_norm = make_norm(config.norm, config.dim)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, offset: int | torch.Tensor = 0,
                first_values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        attended, values = self.attn(self.attn_norm(x), cache, offset, first_values)
        x = x + attended
        return x + self.mlp(self.mlp_norm(x)), values

    def zero_outputs(self) -> None:
        """Both residual branches start as the identity (`zero_init`): the output projections are zero."""
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.mlp.down.weight)


def soft_cap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap·tanh(logits / cap) in float32 (`softcap`, Gemma 2 and the speedrun): no logit grows past ±cap."""
    return cap * torch.tanh(logits.float() / cap) if cap else logits
