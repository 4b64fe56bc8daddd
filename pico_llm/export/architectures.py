"""Which of our models other tools can run as they are: a Llama (RMSNorm, SwiGLU, rotary positions)
or a GPT-2 (LayerNorm, GELU, learned positions) — both only from the `transformer` encoder."""

from __future__ import annotations

from torch import nn

LLAMA = {"norm": "rmsnorm", "mlp": "swiglu", "pos_embedding": "rotary"}
GPT2 = {"norm": "layernorm", "mlp": "gelu", "pos_embedding": "learned"}
PLAIN = {"qk_norm": False, "value_residual": False, "softcap": 0.0, "unet": False}  # options neither architecture has


def architecture(model: nn.Module) -> str | None:
    """"llama", "gpt2", or None when no other tool has this architecture."""
    config = getattr(model, "config", None)
    if getattr(model, "name", None) != "transformer" or config.stack != 1:
        return None
    if any(getattr(config, field) != value for field, value in PLAIN.items()):
        return None
    for name, fields in (("llama", LLAMA), ("gpt2", GPT2)):
        if all(getattr(config, field) == value for field, value in fields.items()):
            return name
    return None


def describe(fields: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in fields.items())


SUPPORTED = (f"the transformer with {describe(LLAMA)} (a Llama) or with {describe(GPT2)} (a GPT-2), and stack 1, "
             f"without {', '.join(PLAIN)}")
