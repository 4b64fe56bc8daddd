"""A Hugging Face `transformers` folder that `AutoModelForCausalLM.from_pretrained(DIR)` loads as it is.

Our transformer with RMSNorm, SwiGLU and rotary positions is a Llama (`LlamaForCausalLM`); with
LayerNorm, GELU and learned positions it is a GPT-2 (`GPT2LMHeadModel`). Two layouts differ:

- Rotary positions: ours rotates adjacent channel pairs (2i, 2i+1) of each head (one complex
  multiply); Llama's `rotate_half` pairs channel i with i + head_dim/2. Permuting each head's query
  and key projection rows (even channels first, then odd) turns one into the other; attention scores
  are dot products, which the same permutation of q and k leaves unchanged.
- GPT-2 stores its linear layers as `Conv1D`, weights transposed ([in, out]), always with biases
  (ours are zero).

Writing needs no `transformers`: the files are plain JSON and safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from ..files import atomic_file, write_json
from .architectures import architecture
from .hf_tokenizer import write_tokenizer_files


def rotate_half_rows(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Query/key projection rows from our adjacent-pair rotary layout to Llama's two-halves layout."""
    heads = weight.unflatten(0, (n_head, -1))  # [head, head_dim, in]
    return torch.cat([heads[:, 0::2], heads[:, 1::2]], dim=1).flatten(0, 1)


def llama_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    cfg = model.config
    tensors = {"model.embed_tokens.weight": model.input.embed.weight, "model.norm.weight": model.norm.weight}
    for i, block in enumerate(model.blocks):
        prefix = f"model.layers.{i}."
        q, k, v = block.attn.qkv.weight.chunk(3, dim=0)
        gate, up = block.mlp.up.weight.chunk(2, dim=0)  # our SwiGLU: silu(first half) * second half
        tensors.update({
            prefix + "input_layernorm.weight": block.attn_norm.weight,
            prefix + "self_attn.q_proj.weight": rotate_half_rows(q, cfg.n_head),
            prefix + "self_attn.k_proj.weight": rotate_half_rows(k, cfg.n_head),
            prefix + "self_attn.v_proj.weight": v,
            prefix + "self_attn.o_proj.weight": block.attn.proj.weight,
            prefix + "post_attention_layernorm.weight": block.mlp_norm.weight,
            prefix + "mlp.gate_proj.weight": gate,
            prefix + "mlp.up_proj.weight": up,
            prefix + "mlp.down_proj.weight": block.mlp.down.weight,
        })
    if not cfg.tie_embeddings:
        tensors["lm_head.weight"] = model.head.weight
    return tensors


def llama_config(model: nn.Module) -> dict:
    cfg = model.config
    rope_theta = model.blocks[0].attn.rotary.base
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": model.blocks[0].mlp.down.in_features,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.context,
        "rms_norm_eps": model.norm.eps,
        "rope_theta": rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": None,
        "eos_token_id": None,
    }


def gpt2_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    def conv1d(prefix: str, linear: nn.Linear) -> dict[str, torch.Tensor]:
        return {prefix + ".weight": linear.weight.t(), prefix + ".bias": torch.zeros(linear.out_features)}

    def norm(prefix: str, layer: nn.LayerNorm) -> dict[str, torch.Tensor]:
        return {prefix + ".weight": layer.weight, prefix + ".bias": layer.bias}

    tensors = {"transformer.wte.weight": model.input.embed.weight, "transformer.wpe.weight": model.input.position.table,
               **norm("transformer.ln_f", model.norm)}
    for i, block in enumerate(model.blocks):
        prefix = f"transformer.h.{i}."
        tensors.update({**norm(prefix + "ln_1", block.attn_norm), **conv1d(prefix + "attn.c_attn", block.attn.qkv),
                        **conv1d(prefix + "attn.c_proj", block.attn.proj), **norm(prefix + "ln_2", block.mlp_norm),
                        **conv1d(prefix + "mlp.c_fc", block.mlp.up), **conv1d(prefix + "mlp.c_proj", block.mlp.down)})
    if not model.config.tie_embeddings:
        tensors["lm_head.weight"] = model.head.weight
    return tensors


def gpt2_config(model: nn.Module) -> dict:
    cfg = model.config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": model.blocks[0].mlp.down.in_features,
        "activation_function": "gelu",  # exact GELU, as ours (GPT-2's own is the tanh approximation)
        "layer_norm_epsilon": model.norm.eps,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": None,
        "eos_token_id": None,
    }


LAYOUTS = {"llama": (llama_tensors, llama_config), "gpt2": (gpt2_tensors, gpt2_config)}


def write_hf(model: nn.Module, tokenizer, out: Path, dtype: torch.dtype) -> None:
    """config.json, model.safetensors (weights in `dtype`), generation_config.json and the tokenizer files."""
    tensors_of, config_of = LAYOUTS[architecture(model)]
    tensors = {name: tensor.detach().to(dtype).contiguous() for name, tensor in tensors_of(model).items()}
    with atomic_file(out / "model.safetensors") as handle:
        handle.write(save(tensors, metadata={"format": "pt"}))
    write_json(out / "config.json", {**config_of(model), "torch_dtype": str(dtype).removeprefix("torch.")})
    write_json(out / "generation_config.json", {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None})
    write_tokenizer_files(tokenizer, out, model.config.context)
