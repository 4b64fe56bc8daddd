"""Weight-only int8 quantization for generation (the gpt-fast recipe).

Decoding one token is a matrix-vector product per layer: the time goes into reading weights from
memory, not into arithmetic. Storing Linear weights as int8 with one scale per output channel reads
4× fewer bytes than float32; PyTorch's `_weight_int8pack_mm` kernel multiplies bfloat16 activations
by them directly. Bfloat16 activations on every CPU, even one that emulates bfloat16 arithmetic:
the kernel is 2.5-3.3x slower with float32 ones, on AVX-512 and AVX2 alike (BENCHMARKS.md).
Logits change slightly (per-channel rounding), so this is an opt-in for inference.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import PicoError

QUANTIZATIONS = ("none", "int8")


class Int8Linear(nn.Module):
    """A Linear layer with int8 weights, a per-output-channel scale and bfloat16 arithmetic.

    Built empty (the layout a saved int8 model loads into) or from a float Linear (`from_linear`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=torch.bfloat16))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        layer.weight.copy_(torch.round(weight / scales[:, None]).to(torch.int8))
        layer.scales.copy_(scales.to(torch.bfloat16))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16).reshape(-1, x.shape[-1]), self.weight, self.scales)
        y = y.to(x.dtype) if x.dim() == 2 else y.view(*x.shape[:-1], -1).to(x.dtype)
        return y if self.bias is None else y + self.bias


def quantize(model: nn.Module, kind: str = "int8") -> nn.Module:
    """Replace every nn.Linear of `model` (in place) by its int8 version; `none` leaves it as is."""
    if kind not in QUANTIZATIONS:
        raise PicoError(f"`quantize` must be one of {', '.join(QUANTIZATIONS)}, got {kind!r}")
    if kind == "int8":
        _check_int8_kernel(next(model.parameters()).device)
        _replace_linears(model, Int8Linear.from_linear)
    return model


def int8_layout(model: nn.Module) -> nn.Module:
    """`model` with every nn.Linear replaced by an empty Int8Linear of its shape: what int8 weights load into."""
    return _replace_linears(model, lambda linear: Int8Linear(linear.in_features, linear.out_features, linear.bias is not None))


def _replace_linears(module: nn.Module, convert) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, convert(child))
        else:
            _replace_linears(child, convert)
    return module


def _check_int8_kernel(device: torch.device) -> None:
    """Fail with a clear message where the int8 kernel is missing (e.g. on MPS)."""
    try:
        torch.ops.aten._weight_int8pack_mm(
            torch.zeros(1, 32, dtype=torch.bfloat16, device=device), torch.zeros(8, 32, dtype=torch.int8, device=device),
            torch.ones(8, dtype=torch.bfloat16, device=device),
        )
    except (RuntimeError, NotImplementedError) as err:
        raise PicoError(f"int8 generation is not supported on {device.type} ({type(err).__name__}); set `quantize` to none") from None
