"""Samplers, streaming text assembly and the generate API."""

import re

import pytest
import torch

from pico_llm import build_model, generate
from pico_llm.data.tokenizers import ByteTokenizer, CharTokenizer
from pico_llm.errors import PicoError
from pico_llm.inference.generation import Sampling, TextAssembler, sample_next, stream


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("kgram_cnn", vocab_size=256, context=32, width=16, n_layers=2).eval()


@pytest.mark.parametrize("name", ["kgram_cnn", "transformer", "kgram_mlp"])
def test_greedy_equals_a_naive_full_forward_loop(name):
    torch.manual_seed(1)
    net = build_model(name, vocab_size=256, context=16, **{"transformer": {"n_layer": 2, "n_embd": 32}}.get(name, {})).eval()
    ids = list(b"ab")
    for _ in range(14):  # within the context, where every decoding policy agrees
        with torch.no_grad():
            ids.append(int(net(torch.tensor([ids]))[0, -1].argmax()))
    assert generate(net, "ab", 14, temperature=0) == bytes(ids[2:]).decode("utf-8", errors="replace")


def test_seed_makes_sampling_reproducible(model):
    first = generate(model, "hello", 30, seed=7, top_k=20)
    assert generate(model, "hello", 30, seed=7, top_k=20) == first
    assert generate(model, "hello", 30, seed=8, top_k=20) != first


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    greedy = generate(model, "x", 20, temperature=0)
    assert generate(model, "x", 20, top_k=1, seed=0) == greedy
    assert generate(model, "x", 20, top_p=1e-6, seed=0) == greedy


def test_repetition_penalty_moves_probability_off_seen_tokens():
    logits = torch.tensor([[2.0, 1.5, -1.0]])
    seen = torch.tensor([[True, False, False]])
    assert sample_next(logits, Sampling(temperature=0), seen=seen).item() == 0
    assert sample_next(logits, Sampling(temperature=0, repetition_penalty=2.0), seen=seen).item() == 1


def test_batched_samples(model):
    samples = generate(model, "ab", 10, num_samples=3, seed=1)
    assert isinstance(samples, list) and len(samples) == 3 and len(set(samples)) > 1
    assert len(set(generate(model, "ab", 10, num_samples=3, temperature=0))) == 1


def test_iterator_form_matches_generate(model):
    assert "".join(stream(model, "ab", 25, seed=3)) == generate(model, "ab", 25, seed=3)


def test_stop_strings_end_a_sample():
    tok = ByteTokenizer()
    assembler = TextAssembler(tok, ["STOP"])
    out = "".join(assembler.push(b) for b in b"hello STOP more") + assembler.flush()
    assert out == "hello "


def test_split_utf8_characters_are_never_printed_broken():
    tok = ByteTokenizer()
    assembler = TextAssembler(tok, [])
    pieces = [assembler.push(b) for b in "é✓日".encode()] + [assembler.flush()]
    assert "\ufffd" not in "".join(pieces)
    assert "".join(pieces) == "é✓日"
    assert pieces[0] == "" and pieces[1] == "é"


def test_empty_prompt_starts_from_a_newline(model):
    assert generate(model, "", 10, seed=2) == generate(model, "\n", 10, seed=2)


def test_bad_generation_inputs(model):
    with pytest.raises(PicoError, match="not in the char tokenizer"):
        generate(model, "€", 5, tokenizer=CharTokenizer(list("abc\n")))
    bad_values = [({"temperature": -1}, "`temperature` must be ≥ 0.0"), ({"top_k": 0}, "`top_k` must be ≥ 1"),
                  ({"top_p": 1.5}, "`top_p` must be > 0.0 and ≤ 1.0"), ({"repetition_penalty": 0}, "`repetition_penalty` must be > 0.0"),
                  ({"temperature": float("nan")}, "`temperature` must be a finite number"),
                  ({"repetition_penalty": float("nan")}, "`repetition_penalty` must be a finite number"),
                  ({"seed": 2**70}, "`seed` must be ≥ 0"), ({"num_samples": 0}, "`num_samples` must be between 1 and 1024")]
    for bad, message in bad_values:
        with pytest.raises(PicoError, match=re.escape(message)):
            generate(model, "a", 5, **bad)
    with pytest.raises(PicoError, match="the prompt is not valid UTF-8"):
        generate(model, "caf\udce9", 5)


def test_non_finite_logits_are_a_clear_error(model):
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(PicoError, match="non-finite logits"):
        generate(model, "a", 5)


@pytest.mark.parametrize("name", ["transformer", "kgram_cnn"])
def test_int8_weights_keep_logits_close(name):
    import copy

    from pico_llm.inference.quantize import Int8Linear, quantize

    torch.manual_seed(0)
    net = build_model(name, vocab_size=256, context=32, width=32, n_layers=2) if name == "kgram_cnn" else \
        build_model(name, vocab_size=256, context=32, n_layer=2, n_embd=64)
    net.eval()
    tokens = torch.randint(0, 256, (2, 32))
    quantized = quantize(copy.deepcopy(net), "int8")
    assert any(isinstance(m, Int8Linear) for m in quantized.modules())
    with torch.no_grad():
        reference, approx = net(tokens), quantized(tokens)
    assert (approx - reference).abs().max() < 0.05 * reference.abs().max()
    assert isinstance(generate(quantized, "ab", 10, seed=0), str)
    with pytest.raises(PicoError, match="`quantize` must be one of none, int8"):
        quantize(net, "int4")


@pytest.mark.parametrize("name", ["transformer", "kgram_cnn"])
def test_column_major_weights_decode_the_same_text(name):
    """The decoding layout changes only strides: logits within rounding, the same greedy text, ties kept."""
    import copy

    from pico_llm.inference.layout import column_major

    torch.manual_seed(0)
    net = build_model(name, vocab_size=256, context=32, **({"n_layer": 2, "n_embd": 64} if name == "transformer" else {})).eval()
    laid_out = column_major(copy.deepcopy(net))
    linears = [m for m in laid_out.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.t().is_contiguous() and not m.weight.is_contiguous() for m in linears)
    if name == "transformer":
        assert laid_out.head.weight is laid_out.input.embed.weight
    tokens = torch.randint(0, 256, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(laid_out(tokens), net(tokens), rtol=0, atol=1e-5)
    assert generate(laid_out, "ab", 20, temperature=0) == generate(net, "ab", 20, temperature=0)
