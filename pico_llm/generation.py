"""Text generation: samplers and a simple decoder that re-runs the model on the last `context` tokens."""

from __future__ import annotations

import torch

from .errors import PicoError


def check_sampler(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if temperature < 0:
        raise PicoError(f"--temperature must be ≥ 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k <= 0:
        raise PicoError(f"--top-k must be a positive number of tokens, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise PicoError(f"--top-p must be in (0, 1], got {top_p}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token id for each row of `logits` [B, V]; temperature 0 is greedy."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate_ids(
    model: torch.nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> list[int]:
    """Continue `prompt_ids` by `max_new_tokens` tokens (the prompt is not included in the result)."""
    check_sampler(temperature, top_k, top_p)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    was_training = model.training
    model.eval()
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        logits = model(ids[:, -model.config.context :])[:, -1]
        ids = torch.cat([ids, sample_next(logits, temperature, top_k, top_p, generator)], dim=1)
    model.train(was_training)
    return ids[0, len(prompt_ids) :].tolist()


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> str:
    """Continue `prompt` with generated text; an empty prompt starts from a newline."""
    prompt_ids = tokenizer.encode(prompt or "\n")
    if not prompt_ids:
        raise PicoError("the prompt encodes to no tokens; give a non-empty prompt")
    new_ids = generate_ids(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed)
    return tokenizer.decode(new_ids)
