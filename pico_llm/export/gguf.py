"""GGUF export: one file that llama.cpp (and what builds on it: Ollama, LM Studio) runs as it is.

Only our Llama-shaped transformer has a llama.cpp architecture (`architecture(model) == "llama"`).
Its weights map one to one onto llama.cpp's tensors, with two splits: our fused `qkv` projection
becomes attn_q, attn_k and attn_v, and our SwiGLU `up` (gate rows, then value rows) becomes ffn_gate
and ffn_up. No row is permuted: our Rotary turns adjacent channel pairs (2i, 2i+1), which is the
layout llama.cpp's llama architecture expects (the permutation in llama.cpp's own converter only
undoes Hugging Face's rotate-half layout).

The byte and BPE tokenizers are byte-level BPE, which llama.cpp reads as a "gpt2" vocabulary with
GPT-2's pre-tokenizer, so llama.cpp tokenizes prompts exactly as we do. The char tokenizer has no
llama.cpp counterpart: its file holds token ids only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import torch
from torch import nn

from ..data.tokenizers import BPETokenizer, ByteTokenizer, Tokenizer, gpt2_byte_alphabet
from ..errors import PicoError
from ..files import atomic_file
from .architectures import LLAMA, architecture

# kind -> (GGML type of the weight matrices, llama.cpp's file type that names the mix)
KINDS = {
    "float32": ("F32", "ALL_F32"),
    "float16": ("F16", "MOSTLY_F16"),
    "bfloat16": ("BF16", "MOSTLY_BF16"),
    "int8": ("Q8_0", "MOSTLY_Q8_0"),
}
# gguf refuses an empty array, and llama.cpp refuses a "gpt2" vocabulary without merges. A merge of two
# characters outside the byte-level alphabet can never apply, so a vocabulary without merges stays one.
NO_MERGE = "\u2400 \u2400"
LLAMA_CPP_DEFAULT_EOS = 11  # llama.cpp's end of text for a "gpt2" vocabulary that names none


def write_gguf(model: nn.Module, tokenizer: Tokenizer, path: Path, kind: str = "float32") -> str | None:
    """Write `model` (architecture(model) == "llama", else PicoError) as one GGUF file at `path`; returns a
    one-line note for the user when there is something to know (e.g. the vocabulary could not be written), else None.

    `kind` is the type of the weight matrices: float32, float16, bfloat16 or int8 (llama.cpp's Q8_0);
    norm weights stay float32, as llama.cpp's converter keeps them. The file appears whole or not at all.
    """
    matrix_name, file_type_name = _resolve_kind(kind)
    matrix_type, file_type = gguf.GGMLQuantizationType[matrix_name], gguf.LlamaFileType[file_type_name]
    _check_exportable(model, tokenizer)
    path = Path(path)
    with atomic_file(path) as handle:
        # GGUFWriter opens files only by name: it writes the temporary file that atomic_file then syncs and renames
        writer = gguf.GGUFWriter(handle.name, arch="llama")
        try:
            _add_hyperparameters(writer, model, path.stem, file_type)
            vocabulary_note = _add_vocabulary(writer, tokenizer, path.name)
            kept_f16 = _add_tensors(writer, model, matrix_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    notes = (vocabulary_note, _fallback_note(kind, kept_f16, matrix_type, model.config.n_embd))
    return "; ".join(note for note in notes if note) or None


def _resolve_kind(kind: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise PicoError(f"GGUF weights are one of {', '.join(KINDS)} (`dtype`, or `quantize` int8), got {kind!r}")
    return KINDS[kind]


def _check_exportable(model: nn.Module, tokenizer: Tokenizer) -> None:
    if architecture(model) != "llama":
        fields = ", ".join(f"`{field}` {value}" for field, value in LLAMA.items())
        raise PicoError(
            f"GGUF export needs a Llama: the transformer with {fields} and `stack` 1; "
            "train one with those settings, or export to another format"
        )
    if tokenizer.vocab_size != model.config.vocab_size:
        raise PicoError(
            f"the {tokenizer.name} tokenizer has {tokenizer.vocab_size} tokens but the model's `vocab_size` is "
            f"{model.config.vocab_size}; export with the tokenizer the model was trained with"
        )


def _add_hyperparameters(writer: gguf.GGUFWriter, model: nn.Module, name: str, file_type: gguf.LlamaFileType) -> None:
    """The llama.* keys llama.cpp builds the graph from; anything left out takes llama.cpp's default."""
    config = model.config
    writer.add_name(name)
    writer.add_context_length(config.context)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(model.blocks[0].mlp.down.in_features)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_head)
    writer.add_layer_norm_rms_eps(model.norm.eps)
    writer.add_rope_freq_base(model.blocks[0].attn.rotary.base)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_vocabulary(writer: gguf.GGUFWriter, tokenizer: Tokenizer, filename: str) -> str | None:
    """A "gpt2" vocabulary for byte-level tokenizers, ids only ("no_vocab") for any other; returns a note."""
    vocabulary = _byte_level_vocabulary(tokenizer)
    if vocabulary is None:
        writer.add_tokenizer_model("no_vocab")
        return (
            f"the {tokenizer.name} tokenizer has no llama.cpp vocabulary type: {filename} holds ids only "
            "(tokenizer.ggml.model no_vocab); tokenize with pico-llm"
        )
    tokens, merges = vocabulary
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # GPT-2's split, as our ByteLevel pre-tokenizer; "default" splits otherwise
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * len(tokens))
    writer.add_token_merges(merges or [NO_MERGE])
    writer.add_add_bos_token(False)
    return _end_of_text_note(tokenizer)


def _byte_level_vocabulary(tokenizer: Tokenizer) -> tuple[list[str], list[str]] | None:
    """Token strings in id order (bytes in GPT-2's printable alphabet) and merges as "a b"; None if not byte-level."""
    if isinstance(tokenizer, ByteTokenizer):
        alphabet = gpt2_byte_alphabet()
        return [alphabet[byte] for byte in range(256)], []
    if isinstance(tokenizer, BPETokenizer):
        tokens = [tokenizer.hf.id_to_token(i) for i in range(tokenizer.vocab_size)]
        merges = json.loads(tokenizer.hf.to_str())["model"]["merges"]
        return tokens, [merge if isinstance(merge, str) else " ".join(merge) for merge in merges]
    return None


def _end_of_text_note(tokenizer: Tokenizer) -> str | None:
    """llama.cpp stops generating at token 11 of a "gpt2" vocabulary without an end-of-text token, and
    metadata cannot unset that. Worth a note when token 11 is text a model writes (BPE's ','), not the
    byte tokenizer's vertical tab."""
    piece = tokenizer.decode([LLAMA_CPP_DEFAULT_EOS])
    if not piece.isprintable():
        return None
    return (
        f"llama.cpp ends generation at token {LLAMA_CPP_DEFAULT_EOS} ({piece!r}), its default end of text "
        "for a vocabulary without one; run llama.cpp with --ignore-eos"
    )


def _llama_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """llama.cpp's tensor names with our weights, in its order; output.weight only when the head is untied."""
    yield "token_embd.weight", model.input.embed.weight
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv.weight.chunk(3)
        gate, up = block.mlp.up.weight.chunk(2)  # MLP.forward: gate, value = h.chunk(2); down(silu(gate) * value)
        for name, weight in (
            ("attn_norm", block.attn_norm.weight), ("attn_q", q), ("attn_k", k), ("attn_v", v),
            ("attn_output", block.attn.proj.weight), ("ffn_norm", block.mlp_norm.weight),
            ("ffn_gate", gate), ("ffn_up", up), ("ffn_down", block.mlp.down.weight),
        ):
            yield f"blk.{i}.{name}.weight", weight
    yield "output_norm.weight", model.norm.weight
    if not model.config.tie_embeddings:
        yield "output.weight", model.head.weight


def _add_tensors(writer: gguf.GGUFWriter, model: nn.Module, matrix_type: gguf.GGMLQuantizationType) -> int:
    """Add every tensor; returns how many matrices could not take `matrix_type` and went in as float16."""
    kept_f16 = 0
    for name, weight in _llama_tensors(model):
        array = weight.detach().float().cpu().numpy()
        tensor_type = _tensor_type(array, matrix_type)
        if array.ndim > 1 and tensor_type != matrix_type:
            kept_f16 += 1
        writer.add_tensor(name, gguf.quants.quantize(array, tensor_type), raw_dtype=tensor_type)
    return kept_f16


def _tensor_type(array: np.ndarray, matrix_type: gguf.GGMLQuantizationType) -> gguf.GGMLQuantizationType:
    """F32 for vectors; `matrix_type` for matrices, or F16 where rows do not split into its blocks (as llama.cpp)."""
    if array.ndim == 1:
        return gguf.GGMLQuantizationType.F32
    return matrix_type if array.shape[-1] % _block_size(matrix_type) == 0 else gguf.GGMLQuantizationType.F16


def _block_size(tensor_type: gguf.GGMLQuantizationType) -> int:
    return gguf.GGML_QUANT_SIZES[tensor_type][0]


def _fallback_note(kind: str, kept_f16: int, matrix_type: gguf.GGMLQuantizationType, n_embd: int) -> str | None:
    """Only rows `n_embd` wide can miss a block: the SwiGLU hidden width is a multiple of 32 by construction."""
    if not kept_f16:
        return None
    block = _block_size(matrix_type)
    return (
        f"{kept_f16} weight matrices are float16, not {kind}: llama.cpp's {matrix_type.name} needs rows in blocks "
        f"of {block} and `n_embd` is {n_embd}; choose an `n_embd` divisible by {block} for a smaller file"
    )
