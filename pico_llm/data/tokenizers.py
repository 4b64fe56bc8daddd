"""Tokenizers: byte-level (default, nothing to train), character-level and BPE.

Every tokenizer maps raw corpus bytes to integer ids and back, saves itself into a run folder and
knows how many UTF-8 bytes each of its tokens stands for. That last table is what makes bits per
byte exact and comparable across tokenizers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import PicoError

TOKENIZER_FILE = "tokenizer.json"
BPE_MODEL_FILE = "bpe.json"


class Tokenizer:
    """Interface shared by all tokenizers."""

    name: str = ""
    vocab_size: int = 0
    cheap_to_encode: bool = False  # True: a table lookup, which worker processes would only slow down

    def encode_bytes(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_bytes(text.encode("utf-8")).tolist()

    def decode_bytes(self, ids) -> bytes:
        raise NotImplementedError

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_byte_lengths(self) -> np.ndarray:
        """Number of UTF-8 bytes each token id decodes to (for bits per byte)."""
        raise NotImplementedError

    def state(self) -> dict:
        """JSON-serialisable description, enough to rebuild the tokenizer."""
        return {"name": self.name}

    def fingerprint(self) -> str:
        """Stable identity used as part of the token-cache key."""
        blob = json.dumps(self.state(), sort_keys=True).encode()
        return f"{self.name}-{hashlib.sha256(blob).hexdigest()[:16]}"

    def save(self, folder: Path) -> None:
        Path(folder, TOKENIZER_FILE).write_text(json.dumps(self.state(), indent=1))


class ByteTokenizer(Tokenizer):
    """The 256 byte values are the vocabulary: accepts any input, needs no training."""

    name = "byte"
    vocab_size = 256
    cheap_to_encode = True

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)

    def decode_bytes(self, ids) -> bytes:
        return bytes(int(i) for i in ids)

    def token_byte_lengths(self) -> np.ndarray:
        return np.ones(256, dtype=np.int64)


class CharTokenizer(Tokenizer):
    """One id per distinct Unicode character of the training text (makemore / nanoGPT char style)."""

    name = "char"

    def __init__(self, chars: list[str]):
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self.vocab_size = len(chars)

    @classmethod
    def train(cls, data: bytes) -> CharTokenizer:
        return cls(sorted(set(_utf8(data, "char"))))

    def encode_bytes(self, data: bytes) -> np.ndarray:
        text = _utf8(data, "char")
        try:
            return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as err:
            raise PicoError(
                f"character {err.args[0]!r} is not in the char tokenizer's vocabulary; "
                "use the byte `tokenizer`, or train the char tokenizer on text that contains it"
            ) from None

    def decode_bytes(self, ids) -> bytes:
        return "".join(self.chars[int(i)] for i in ids).encode("utf-8")

    def token_byte_lengths(self) -> np.ndarray:
        return np.array([len(c.encode("utf-8")) for c in self.chars], dtype=np.int64)

    def state(self) -> dict:
        return {"name": self.name, "chars": self.chars}


class BPETokenizer(Tokenizer):
    """Byte-level BPE trained locally with Hugging Face `tokenizers` (lossless on any UTF-8 text)."""

    name = "bpe"

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.vocab_size = hf_tokenizer.get_vocab_size()
        self._byte_decoder = {ch: b for b, ch in gpt2_byte_alphabet().items()}

    @classmethod
    def train(cls, data: bytes, vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise PicoError(f"`vocab_size` {vocab_size} is too small for BPE; use at least 257")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        text = _utf8(data, "bpe")
        hf.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(hf)

    def encode_bytes(self, data: bytes) -> np.ndarray:
        text = _utf8(data, "bpe")
        # HF tokenizers slows down on long inputs: 4 KB pieces encode ~2.5x faster than 64 KB ones
        ids = [i for enc in self.hf.encode_batch(list(_chunks(text, 1 << 12))) for i in enc.ids]
        return np.asarray(ids, dtype=np.int64)

    def _token_bytes(self, token_id: int) -> bytes:
        return bytes(self._byte_decoder[ch] for ch in self.hf.id_to_token(token_id))

    def decode_bytes(self, ids) -> bytes:
        return b"".join(self._token_bytes(int(i)) for i in ids)

    def token_byte_lengths(self) -> np.ndarray:
        return np.array([len(self._token_bytes(i)) for i in range(self.vocab_size)], dtype=np.int64)

    def state(self) -> dict:
        return {"name": self.name, "hf": json.loads(self.hf.to_str())}


TOKENIZER_NAMES = ("byte", "char", "bpe")


def train_tokenizer(name: str, data: bytes, vocab_size: int = 1024) -> Tokenizer:
    """Build the named tokenizer, training it on `data` where it needs training."""
    if name == "byte":
        return ByteTokenizer()
    if name == "char":
        return CharTokenizer.train(data)
    if name == "bpe":
        return BPETokenizer.train(data, vocab_size)
    raise PicoError(f"unknown tokenizer {name!r}; choose one of: {', '.join(TOKENIZER_NAMES)}")


def tokenizer_from_state(state: dict) -> Tokenizer:
    name = state.get("name")
    if name == "byte":
        return ByteTokenizer()
    if name == "char":
        return CharTokenizer(state["chars"])
    if name == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        return BPETokenizer(HFTokenizer.from_str(json.dumps(state["hf"])))
    raise PicoError(f"unknown tokenizer {name!r} in saved state")


def load_tokenizer(folder: Path) -> Tokenizer:
    path = Path(folder, TOKENIZER_FILE)
    if not path.is_file():
        raise PicoError(f"{folder} has no {TOKENIZER_FILE}; pass a run folder written by `pico-llm train`")
    return tokenizer_from_state(json.loads(path.read_text()))


def _utf8(data: bytes, tokenizer: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PicoError(
            f"the data is not valid UTF-8 (byte {err.start}); the {tokenizer} tokenizer needs text, "
            "use the byte `tokenizer` for arbitrary bytes"
        ) from None


def _chunks(text: str, size: int = 1 << 16):
    """Split text at line boundaries into pieces HF tokenizers can batch."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def gpt2_byte_alphabet() -> dict[int, str]:
    """The byte → printable-character map used by byte-level BPE (GPT-2's convention)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping
