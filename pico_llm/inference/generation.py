"""Text generation: incremental decoding (prefill once, then one cheap step per token) and samplers.

Every encoder carries its own decoding state (KV caches, conv buffers, k-gram windows, LSTM state),
so a new token costs only the new work. Samplers: greedy (temperature 0), temperature, top-k, top-p
(nucleus), repetition penalty; a seed makes output reproducible; several samples decode together as
one batch. Text comes out as it is produced, and a character split across byte tokens is held back
until it is complete, so a stream never shows a broken character.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..config import MAX_SEED, check_fields, option
from ..errors import PicoError

EMPTY_PROMPT = "\n"
MAX_SAMPLES = 1024  # samples decode as one batch: more would only exhaust memory


@dataclass
class Sampling:
    """How the next token is chosen from the logits; every value is checked when it is built."""

    temperature: float = option(1.0, min=0.0, max=100.0)
    top_k: int | None = option(None, min=1)
    top_p: float | None = option(None, above=0.0, max=1.0)
    repetition_penalty: float = option(1.0, above=0.0, max=100.0)
    seed: int | None = option(None, min=0, max=MAX_SEED)

    def __post_init__(self) -> None:
        check_fields(self)


def sample_next(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None,
                seen: torch.Tensor | None = None) -> torch.Tensor:
    """Pick the next token id for each row of `logits` [B, V] -> [B, 1].

    `seen` [B, V] marks tokens already in each sequence, for the (CTRL-style) repetition penalty.
    """
    logits = logits.float()
    if not torch.isfinite(logits).all():
        raise PicoError("the model produced non-finite logits (its weights hold NaN or inf); use a checkpoint from before its loss diverged")
    if seen is not None and sampling.repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / sampling.repetition_penalty, logits * sampling.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if sampling.temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p is not None and sampling.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= sampling.top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)


def _generator(device: torch.device, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@torch.no_grad()
def stream_ids(model, prompt_ids: list[int], max_new_tokens: int, sampling: Sampling | None = None,
               num_samples: int = 1) -> Iterator[torch.Tensor]:
    """Yield the next token of every sample, [num_samples], `max_new_tokens` times."""
    sampling = sampling or Sampling()
    if max_new_tokens < 0:
        raise PicoError(f"`max_new_tokens` must be ≥ 0, got {max_new_tokens}")
    if not 0 < num_samples <= MAX_SAMPLES:
        raise PicoError(f"`num_samples` must be between 1 and {MAX_SAMPLES}, got {num_samples}")
    device = next(model.parameters()).device
    generator = _generator(device, sampling.seed)
    was_training = model.training
    model.eval()
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device).expand(num_samples, -1)
    seen = torch.zeros(num_samples, model.config.vocab_size, dtype=torch.bool, device=device)
    seen[:, prompt[0]] = True
    try:
        logits, state = model.prefill(prompt, model.init_state(num_samples))
        for i in range(max_new_tokens):
            token = sample_next(logits, sampling, generator, seen)
            seen.scatter_(1, token, True)
            yield token[:, 0]
            if i + 1 < max_new_tokens:
                logits, state = model.step(token, state)
    finally:
        model.train(was_training)


class TextAssembler:
    """Turns one sample's token ids into safe text pieces: whole UTF-8 characters, stop strings cut."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) - 1 for s in self.stop), default=0)
        self.pending = ""
        self.done = False

    def push(self, token_id: int) -> str:
        """Add a token; return the text that is now certain (nothing of a possible stop string)."""
        if self.done:
            return ""
        self.pending += self.decoder.decode(self.tokenizer.decode_bytes([token_id]))
        for stop in self.stop:
            cut = self.pending.find(stop)
            if cut >= 0:
                self.done = True
                out, self.pending = self.pending[:cut], ""
                return out
        ready = len(self.pending) - self.hold
        out, self.pending = self.pending[: max(ready, 0)], self.pending[max(ready, 0) :]
        return out

    def flush(self) -> str:
        if self.done:
            return ""
        out, self.pending = self.pending + self.decoder.decode(b"", final=True), ""
        return out


def _model_and_tokenizer(model_or_run, tokenizer):
    if hasattr(model_or_run, "tokenizer") and hasattr(model_or_run, "model"):
        return model_or_run.model, tokenizer or model_or_run.tokenizer
    if tokenizer is None:
        from ..data.tokenizers import ByteTokenizer

        tokenizer = ByteTokenizer()
    return model_or_run, tokenizer


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt ids; an empty prompt starts from a newline (a natural document boundary)."""
    try:
        ids = tokenizer.encode(prompt or EMPTY_PROMPT)
    except UnicodeEncodeError:
        raise PicoError("the prompt is not valid UTF-8 text; give it as UTF-8") from None
    if not ids:
        raise PicoError("the prompt encodes to no tokens; give a non-empty prompt")
    return ids


def stream_samples(model_or_run, prompt: str = "", max_new_tokens: int = 200, *, tokenizer=None,
                   num_samples: int = 1, stop: list[str] | tuple = (), stats: dict | None = None,
                   **sampling) -> Iterator[tuple[int, str]]:
    """Yield (sample index, text piece) as tokens are produced; all samples decode as one batch.

    `stats`, if given, gets the number of tokens generated under "tokens" (for tokens/s reports).
    """
    model, tokenizer = _model_and_tokenizer(model_or_run, tokenizer)
    assemblers = [TextAssembler(tokenizer, list(stop)) for _ in range(num_samples)]
    stats = {} if stats is None else stats
    stats.setdefault("tokens", 0)
    for tokens in stream_ids(model, encode_prompt(tokenizer, prompt), max_new_tokens, Sampling(**sampling), num_samples):
        stats["tokens"] += num_samples
        for index, token in enumerate(tokens.tolist()):
            piece = assemblers[index].push(token)
            if piece:
                yield index, piece
        if all(a.done for a in assemblers):
            return
    for index, assembler in enumerate(assemblers):
        piece = assembler.flush()
        if piece:
            yield index, piece


def stream(model_or_run, prompt: str = "", max_new_tokens: int = 200, **kwargs) -> Iterator[str]:
    """Iterator form of `generate` for one sample: yields text pieces as they are produced."""
    for _, piece in stream_samples(model_or_run, prompt, max_new_tokens, **kwargs):
        yield piece


def generate(model_or_run, prompt: str = "", max_new_tokens: int = 200, *, num_samples: int = 1, **kwargs):
    """Continue `prompt` (the continuation only is returned); a list of texts when num_samples > 1.

    `model_or_run` is a `Run` from `load_run` or a model (with `tokenizer=`, bytes by default).
    Keyword options: temperature, top_k, top_p, repetition_penalty, seed, stop (list of strings).
    """
    texts = [""] * num_samples
    for index, piece in stream_samples(model_or_run, prompt, max_new_tokens, num_samples=num_samples, **kwargs):
        texts[index] += piece
    return texts if num_samples > 1 else texts[0]
