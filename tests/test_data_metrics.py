"""The data path (split, cache, batches) and the metrics (bits per byte checked by hand)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pico_llm.data.batches import eval_batches, sample_batch
from pico_llm.data.cache import load_corpus, read_corpus, split_bytes, tokenize_cached
from pico_llm.data.tokenizers import ByteTokenizer, CharTokenizer
from pico_llm.errors import PicoError, PicoWarning
from pico_llm.training.metrics import evaluate


def test_split_is_last_tenth_and_keeps_characters_whole():
    data = ("é" * 50).encode()
    train, val = split_bytes(data)
    assert train + val == data
    assert (train.decode(), val.decode()) == ("é" * 45, "é" * 5)  # the cut (byte 90) moved to a character start
    assert len(split_bytes(b"x" * 1000)[1]) == 100


def test_batches_are_next_token_windows():
    tokens = np.arange(1000, dtype=np.uint16)
    inputs, targets = sample_batch(tokens, 16, 8, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (8, 16)
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert torch.equal(targets[:, 0], inputs[:, 0] + 1)


def test_eval_batches_cover_the_split_once():
    tokens = np.arange(101, dtype=np.uint16)
    targets = torch.cat([t.flatten() for _, t in eval_batches(tokens, 10, 3)])
    assert targets.tolist() == list(range(1, 101))


def test_a_limited_eval_spreads_its_windows_over_the_whole_split():
    tokens = np.arange(1001, dtype=np.uint16)
    inputs = torch.cat([i for i, _ in eval_batches(tokens, 10, 4, max_tokens=50)])
    assert inputs.shape == (5, 10)
    starts = inputs[:, 0].tolist()
    assert starts[0] == 0 and starts[-1] == 990 and all(s % 10 == 0 for s in starts)  # whole windows, first to last
    assert len(set(starts)) == 5


def test_token_cache_is_reused(text_file):
    tok = ByteTokenizer()
    first = tokenize_cached(text_file.read_bytes(), tok)
    second = tokenize_cached(text_file.read_bytes(), tok)
    assert first.filename == second.filename
    assert bytes(np.asarray(first, dtype=np.uint8)) == text_file.read_bytes()


def test_folder_of_text_files(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    (tmp_path / "skip.md").write_text("not me")
    assert read_corpus(tmp_path) == b"alpha\nbeta"


def test_byte_tokenizer_accepts_any_bytes(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.warns(PicoWarning, match="is mostly not UTF-8 text"):
        corpus = load_corpus(path, "byte")
    assert len(corpus.train) + len(corpus.val) == 256 * 20


def test_context_longer_than_val_is_an_error(text_file):
    corpus = load_corpus(text_file, "byte")
    with pytest.raises(PicoError, match="too long"):
        corpus.check_context(len(corpus.val))


class Uniform(nn.Module):
    """Predicts every token of a V-token vocabulary with probability 1/V."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, self.vocab) + self.dummy


def test_bits_per_byte_hand_checked_bytes():
    tokens = np.frombuffer(b"hello world, hello!", dtype=np.uint8)
    metrics = evaluate(Uniform(256), tokens, np.ones(256, dtype=np.int64), 6, 2, torch.device("cpu"))
    assert metrics["tokens"] == 18
    assert metrics["loss"] == pytest.approx(math.log(256))
    assert metrics["bits_per_byte"] == pytest.approx(8.0)
    assert metrics["perplexity"] == pytest.approx(256)


def test_bits_per_byte_hand_checked_multibyte_chars():
    """4 char tokens, uniform → 2 bits each; the targets 'é€a' are 2+3+1 = 6 bytes → 6 bits / 6 bytes."""
    tok = CharTokenizer(["a", "é", "€", "z"])
    tokens = np.array(tok.encode("zé€a"))
    metrics = evaluate(Uniform(4), tokens, tok.token_byte_lengths(), 3, 1, torch.device("cpu"))
    assert metrics["tokens"] == 3
    assert metrics["bits_per_byte"] == pytest.approx(3 * 2 / 6)
    assert metrics["accuracy"] == pytest.approx(1 / 3)  # argmax of ties is id 0 = "a"
