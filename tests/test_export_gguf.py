"""GGUF export: llama.cpp's tensor names, shapes and types, the metadata it builds the model from, the
vocabulary it tokenizes with, and the same logits when something else reads the file back."""

import numpy as np
import pytest
import torch

from pico_llm.data import tokenizers
from pico_llm.data.tokenizers import ByteTokenizer, CharTokenizer, train_tokenizer
from pico_llm.errors import PicoError
from pico_llm.models import build_model, model_class

gguf = pytest.importorskip("gguf", reason="GGUF export needs the gguf package (pico-llm[export])")
gguf_export = pytest.importorskip("pico_llm.export.gguf")
write_gguf = gguf_export.write_gguf

TEXT = "the quick brown fox, jumps over the lazy dog. café №12345!\n" * 40
GGML = gguf.GGMLQuantizationType
MATRIX_TYPES = {"float32": GGML.F32, "float16": GGML.F16, "bfloat16": GGML.BF16, "int8": GGML.Q8_0}
FILE_TYPES = {"float32": 0, "float16": 1, "bfloat16": 32, "int8": 7}  # llama.cpp's LLAMA_FTYPE_* values
TOLERANCE = {"float32": 0.0, "float16": 1e-3, "bfloat16": 1e-2, "int8": 1e-2}  # of the tensor's max |weight|
TOKENIZERS = {
    "byte": ByteTokenizer,
    "char": lambda: CharTokenizer.train(TEXT.encode()),
    "bpe": lambda: train_tokenizer("bpe", TEXT.encode(), 300),
}


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def tokenizer(request):
    return TOKENIZERS[request.param]()


def llama(vocab_size: int = 256, **overrides):
    torch.manual_seed(0)
    fields = {"context": 64, "n_layer": 2, "n_head": 2, "n_embd": 64, **overrides}
    return build_model("transformer", vocab_size=vocab_size, **fields).eval()


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def expected_weights(model) -> dict[str, torch.Tensor]:
    """llama.cpp's tensors from our parameter names: qkv split in three, SwiGLU's up in gate and up."""
    params = dict(model.named_parameters(remove_duplicate=False))
    weights = {"token_embd.weight": params["input.embed.weight"], "output_norm.weight": params["norm.weight"]}
    for i in range(model.config.n_layer):
        q, k, v = params[f"blocks.{i}.attn.qkv.weight"].chunk(3)
        gate, up = params[f"blocks.{i}.mlp.up.weight"].chunk(2)
        weights.update({
            f"blk.{i}.attn_norm.weight": params[f"blocks.{i}.attn_norm.weight"],
            f"blk.{i}.attn_q.weight": q, f"blk.{i}.attn_k.weight": k, f"blk.{i}.attn_v.weight": v,
            f"blk.{i}.attn_output.weight": params[f"blocks.{i}.attn.proj.weight"],
            f"blk.{i}.ffn_norm.weight": params[f"blocks.{i}.mlp_norm.weight"],
            f"blk.{i}.ffn_gate.weight": gate, f"blk.{i}.ffn_up.weight": up,
            f"blk.{i}.ffn_down.weight": params[f"blocks.{i}.mlp.down.weight"],
        })
    if not model.config.tie_embeddings:
        weights["output.weight"] = params["head.weight"]
    return {name: weight.detach() for name, weight in weights.items()}


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("kind", list(MATRIX_TYPES))
def test_tensors_have_llama_cpp_names_shapes_and_types(tmp_path, kind, tie):
    model = llama(tie_embeddings=tie)
    write_gguf(model, ByteTokenizer(), tmp_path / "model.gguf", kind)
    reader = gguf.GGUFReader(tmp_path / "model.gguf")
    assert field(reader, "general.file_type") == FILE_TYPES[kind]
    tensors = {t.name: t for t in reader.tensors}
    expected = expected_weights(model)
    assert set(tensors) == set(expected)
    assert ("output.weight" in tensors) == (not tie)
    for name, weight in expected.items():
        assert list(tensors[name].shape) == list(reversed(weight.shape)), name  # GGUF lists the row length first
        assert tensors[name].tensor_type == (GGML.F32 if weight.dim() == 1 else MATRIX_TYPES[kind]), name


@pytest.mark.parametrize("kind", list(MATRIX_TYPES))
def test_tensor_values_are_the_weights(tmp_path, kind):
    """float32 bit for bit; the others within their rounding (Q8_0: 1% of the largest weight)."""
    model = llama(tie_embeddings=False)
    write_gguf(model, ByteTokenizer(), tmp_path / "model.gguf", kind)
    expected = expected_weights(model)
    for tensor in gguf.GGUFReader(tmp_path / "model.gguf").tensors:
        weight = expected[tensor.name].numpy()
        values = gguf.dequantize(tensor.data, tensor.tensor_type).reshape(weight.shape)
        if kind == "float32" or weight.ndim == 1:
            np.testing.assert_array_equal(values, weight, err_msg=tensor.name)
        else:
            assert np.abs(values - weight).max() <= TOLERANCE[kind] * np.abs(weight).max(), tensor.name


def test_metadata_is_what_llama_cpp_builds_the_model_from(tmp_path, tokenizer):
    model = llama(tokenizer.vocab_size, context=48, n_layer=3, n_head=4, n_embd=64)
    write_gguf(model, tokenizer, tmp_path / "tiny.gguf", "float16")
    reader = gguf.GGUFReader(tmp_path / "tiny.gguf")
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.name") == "tiny"
    assert field(reader, "llama.context_length") == 48
    assert field(reader, "llama.embedding_length") == 64
    assert field(reader, "llama.block_count") == 3
    assert field(reader, "llama.feed_forward_length") == model.blocks[0].mlp.down.in_features
    assert field(reader, "llama.attention.head_count") == 4
    assert field(reader, "llama.attention.head_count_kv") == 4
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6, rel=1e-6)
    assert field(reader, "llama.rope.freq_base") == 10000.0
    assert field(reader, "llama.rope.dimension_count") == 16
    assert field(reader, "llama.vocab_size") == tokenizer.vocab_size


def test_rope_metadata_reproduces_our_rotary(tmp_path):
    """llama.cpp's rotation of pair i at position p is p·base^(-2i/dims): the angles our Rotary turns by."""
    model = llama()
    rotary, dims = model.blocks[0].attn.rotary, model.config.head_dim
    write_gguf(model, ByteTokenizer(), tmp_path / "m.gguf")
    base = field(gguf.GGUFReader(tmp_path / "m.gguf"), "llama.rope.freq_base")
    inv_freq = base ** (-torch.arange(0, dims, 2, dtype=torch.float64) / dims)
    angles = torch.outer(torch.arange(rotary.rotations.shape[0], dtype=torch.float64), inv_freq)
    torch.testing.assert_close(rotary.rotations[..., 0].double(), angles.cos(), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotary.rotations[..., 1].double(), angles.sin(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["byte", "bpe"])
def test_byte_level_vocabularies_are_gpt2_ones_with_our_ids(tmp_path, name):
    tokenizer = TOKENIZERS[name]()
    write_gguf(llama(tokenizer.vocab_size), tokenizer, tmp_path / "model.gguf")
    reader = gguf.GGUFReader(tmp_path / "model.gguf")
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"  # the split of our ByteLevel pre-tokenizer
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert "tokenizer.ggml.bos_token_id" not in reader.fields and "tokenizer.ggml.eos_token_id" not in reader.fields
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert field(reader, "tokenizer.ggml.token_type") == [gguf.TokenType.NORMAL] * tokenizer.vocab_size
    byte_of = {char: byte for byte, char in tokenizers.gpt2_byte_alphabet().items()}
    assert [bytes(byte_of[c] for c in token) for token in tokens] == [
        tokenizer.decode_bytes([i]) for i in range(tokenizer.vocab_size)
    ]
    merges = field(reader, "tokenizer.ggml.merges")
    if name == "bpe":
        assert merges == [" ".join(pair) for pair in tokenizer.state()["hf"]["model"]["merges"]]
    else:  # no merges; gguf cannot write an empty array, so one that never applies stands in
        assert merges == [gguf_export.NO_MERGE]
        assert not set(merges[0].replace(" ", "")) & set(tokens)


def test_a_char_vocabulary_is_ids_only_with_a_note(tmp_path):
    tokenizer = TOKENIZERS["char"]()
    note = write_gguf(llama(tokenizer.vocab_size), tokenizer, tmp_path / "model.gguf")
    reader = gguf.GGUFReader(tmp_path / "model.gguf")
    assert field(reader, "tokenizer.ggml.model") == "no_vocab"
    assert "tokenizer.ggml.tokens" not in reader.fields
    assert field(reader, "llama.vocab_size") == tokenizer.vocab_size  # what llama.cpp sizes a no_vocab model by
    assert note == (
        "the char tokenizer has no llama.cpp vocabulary type: model.gguf holds ids only "
        "(tokenizer.ggml.model no_vocab); tokenize with pico-llm"
    )


def test_notes_say_where_llama_cpp_would_stop_generating(tmp_path):
    """llama.cpp ends text at token 11 of a gpt2 vocabulary with no end-of-text token: BPE's ',' is worth a
    note, the byte tokenizer's vertical tab is not."""
    assert write_gguf(llama(), ByteTokenizer(), tmp_path / "byte.gguf") is None
    bpe = TOKENIZERS["bpe"]()
    note = write_gguf(llama(bpe.vocab_size), bpe, tmp_path / "bpe.gguf")
    assert note.startswith("llama.cpp ends generation at token 11 (',')") and "--ignore-eos" in note


def test_int8_keeps_float16_where_rows_do_not_split_into_blocks(tmp_path):
    """Q8_0 packs rows in blocks of 32: with `n_embd` 48 only ffn_down (rows of the hidden width) fits."""
    model = llama(n_embd=48)
    note = write_gguf(model, ByteTokenizer(), tmp_path / "model.gguf", "int8")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(tmp_path / "model.gguf").tensors}
    matrices = {name: kind for name, kind in types.items() if not name.endswith("norm.weight")}
    assert {name for name, kind in matrices.items() if kind == GGML.Q8_0} == {"blk.0.ffn_down.weight",
                                                                               "blk.1.ffn_down.weight"}
    assert {kind for kind in matrices.values()} == {GGML.Q8_0, GGML.F16}
    assert note.startswith(f"{len(matrices) - 2} weight matrices are float16, not int8") and "`n_embd` is 48" in note


@pytest.mark.parametrize("name, fields", [
    ("transformer", {"norm": "layernorm"}),
    ("transformer", {"mlp": "gelu"}),
    ("transformer", {"pos_embedding": "learned"}),
    ("transformer", {"stack": 2, "pos_embedding": "none"}),
    ("kgram_cnn", {}),
])
def test_models_llama_cpp_cannot_run_are_refused(tmp_path, name, fields):
    model = build_model(name, vocab_size=256, context=32, **{**model_class(name).debug, **fields})
    with pytest.raises(PicoError, match="GGUF export needs a Llama"):
        write_gguf(model, ByteTokenizer(), tmp_path / "model.gguf")
    assert not any(tmp_path.iterdir())


def test_bad_kind_and_mismatched_tokenizer_are_refused(tmp_path):
    with pytest.raises(PicoError, match=r"float32, float16, bfloat16, int8 \(`dtype`, or `quantize` int8\), got 'q4'"):
        write_gguf(llama(), ByteTokenizer(), tmp_path / "model.gguf", "q4")
    with pytest.raises(PicoError, match="256 tokens but the model's `vocab_size` is 300"):
        write_gguf(llama(300), ByteTokenizer(), tmp_path / "model.gguf")
    assert not any(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.gguf"
    write_gguf(llama(), ByteTokenizer(), path)
    before = path.read_bytes()

    def fail(*args):
        raise RuntimeError("killed")

    monkeypatch.setattr(gguf_export, "_add_tensors", fail)
    with pytest.raises(RuntimeError, match="killed"):
        write_gguf(llama(n_layer=1), ByteTokenizer(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


@pytest.mark.parametrize("tie", [True, False])
def test_transformers_reads_back_the_same_model(tmp_path, tie):
    """transformers' GGUF reader undoes llama.cpp's rotary layout for Hugging Face's Llama: equal logits
    mean the q/k rows, the norms, the SwiGLU halves and the hyperparameters all landed where llama.cpp looks."""
    pytest.importorskip("transformers", reason="transformers reads GGUF files back (pico-llm[dev])")
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    model = llama(tie_embeddings=tie)
    path = tmp_path / "model.gguf"
    write_gguf(model, ByteTokenizer(), path)
    config = load_gguf_checkpoint(str(path))["config"]
    config.pop("model_type")
    reference = LlamaForCausalLM(LlamaConfig(**config)).eval()
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=reference)["tensors"]
    missing = reference.load_state_dict(tensors, strict=False).missing_keys
    assert missing == (["lm_head.weight"] if tie else [])  # tied: lm_head is the embedding
    tokens = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reference(tokens).logits, model(tokens), atol=1e-4, rtol=1e-4)


@pytest.fixture
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python runs the file as llama.cpp does")


def load_in_llama_cpp(llama_cpp, path, context: int):
    return llama_cpp.Llama(model_path=str(path), n_ctx=context, logits_all=True, vocab_only=False,
                           n_threads=2, verbose=False)


@pytest.mark.parametrize("name, tie", [("byte", True), ("byte", False), ("char", True), ("bpe", False)])
def test_llama_cpp_gives_our_logits(tmp_path, llama_cpp, name, tie):
    """At every position of a short prompt, in float32; the char model too, from its ids."""
    tokenizer = TOKENIZERS[name]()
    model = llama(tokenizer.vocab_size, tie_embeddings=tie)
    write_gguf(model, tokenizer, tmp_path / "model.gguf")
    runner = load_in_llama_cpp(llama_cpp, tmp_path / "model.gguf", model.config.context)
    tokens = tokenizer.encode("the quick brown fox, jumps over the café")
    runner.eval(tokens)
    logits = np.asarray(runner.scores[: len(tokens)])
    with torch.no_grad():
        ours = model(torch.tensor([tokens]))[0].numpy()
    np.testing.assert_allclose(logits, ours, atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", ["byte", "bpe"])
def test_llama_cpp_tokenizes_and_detokenizes_as_we_do(tmp_path, llama_cpp, name):
    """GPT-2's split matters: llama.cpp's "default" one tokenizes "(hello) 12345" otherwise than we do."""
    tokenizer = TOKENIZERS[name]()
    model = llama(tokenizer.vocab_size)
    write_gguf(model, tokenizer, tmp_path / "model.gguf")
    runner = load_in_llama_cpp(llama_cpp, tmp_path / "model.gguf", model.config.context)
    assert runner.token_eos() == gguf_export.LLAMA_CPP_DEFAULT_EOS  # what the BPE note warns of
    for text in ["the lazy dog, café №42!\n  over", "say (hello) 12345 dog's"]:
        ids = tokenizer.encode(text)
        assert runner.tokenize(text.encode(), add_bos=False, special=False) == ids
        assert runner.detokenize(ids) == text.encode()
