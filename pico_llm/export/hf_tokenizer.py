"""Our tokenizers as Hugging Face fast tokenizers: `AutoTokenizer.from_pretrained(DIR)` encodes and
decodes exactly as pico-llm does.

- byte: byte-level BPE with GPT-2's byte alphabet, the 256 bytes as the vocabulary (id = byte
  value) and no merges, so every UTF-8 byte is one token.
- char: a BPE model whose vocabulary is the characters and which has no merges, with no
  pre-tokenizer (the text is one "word", split into its characters) and a decoder that joins tokens
  without spaces.
- bpe: ours already is a Hugging Face byte-level BPE; it is written as it is.

None of them has special tokens (our models have no BOS/EOS), and decoding does not "clean up"
spaces, so a round trip gives back the text.
"""

from __future__ import annotations

from pathlib import Path

from ..data.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    gpt2_byte_alphabet,
)
from ..errors import PicoError
from ..files import write_json, write_text


def fast_tokenizer(tokenizer: Tokenizer):
    """A `tokenizers.Tokenizer` that maps text to the same ids as `tokenizer`, and back."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.hf
    if isinstance(tokenizer, ByteTokenizer):
        alphabet = gpt2_byte_alphabet()
        fast = HFTokenizer(models.BPE(vocab={alphabet[b]: b for b in range(256)}, merges=[]))
        fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        fast.decoder = decoders.ByteLevel()
        return fast
    if isinstance(tokenizer, CharTokenizer):
        fast = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(tokenizer.chars)}, merges=[]))
        fast.decoder = decoders.Fuse()
        return fast
    raise PicoError(f"the {tokenizer.name} tokenizer has no Hugging Face form")


def write_tokenizer_files(tokenizer: Tokenizer, out: Path, context: int) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json for `AutoTokenizer`."""
    write_text(out / "tokenizer.json", fast_tokenizer(tokenizer).to_str())
    write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
    })
    write_json(out / "special_tokens_map.json", {})
