"""Tokenizers are lossless and know how many bytes each token covers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pico_llm.data.tokenizers import ByteTokenizer, load_tokenizer, train_tokenizer
from pico_llm.errors import PicoError

TEXT = "Hello, world! Ünïcödé ✓ 日本語 — tabs\tand\nnewlines.\n" * 20


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_byte_tokenizer_round_trips_any_bytes(data):
    tok = ByteTokenizer()
    ids = tok.encode_bytes(data)
    assert tok.decode_bytes(ids) == data
    assert all(0 <= i < 256 for i in ids)


@pytest.mark.parametrize("name", ["byte", "char", "bpe"])
def test_round_trip_and_byte_lengths(name, tmp_path):
    data = TEXT.encode()
    tok = train_tokenizer(name, data, vocab_size=300)
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.token_byte_lengths()[ids].sum() == len(data)
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(TEXT) == ids and again.vocab_size == tok.vocab_size


def test_bpe_compresses():
    data = ("the cat sat on the mat. " * 200).encode()
    tok = train_tokenizer("bpe", data, vocab_size=300)
    assert len(tok.encode_bytes(data)) < len(data) / 3


def test_char_rejects_unknown_character():
    tok = train_tokenizer("char", b"abc")
    with pytest.raises(PicoError, match="not in the char tokenizer"):
        tok.encode("abd")


@pytest.mark.parametrize("name", ["char", "bpe"])
def test_text_tokenizers_reject_non_utf8(name):
    with pytest.raises(PicoError, match="not valid UTF-8"):
        train_tokenizer(name, b"ok \xff\xfe bytes")


def test_unknown_tokenizer():
    with pytest.raises(PicoError, match="unknown tokenizer"):
        train_tokenizer("wordpiece", b"x")
