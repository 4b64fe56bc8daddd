"""Incremental decoding equals the full forward, for every registered encoder and its options."""

import pytest
import torch

from pico_llm.models import build_model, model_class, model_names
from pico_llm.models.base import DecodeState

VARIANTS = {name: {} for name in model_names()}
VARIANTS.update({
    "kgram_mlp-learned-stack": {"pos_embedding": "learned", "stack": 2},
    "kgram_cnn-branches-attention": {"kernel_sizes": (2, 3, 5), "aggregation": "attention", "gated": False},
    "kgram_cnn-learned": {"pos_embedding": "learned"},
    "kgram_cnn-no-mlp": {"mlp_ratio": 0.0},
    "cnn_attention-mlp": {"mlp_ratio": 1.5, "attention_every": 2},
    "transformer-learned-classic": {"pos_embedding": "learned", "norm": "layernorm", "mlp": "gelu", "stack": 3},
    "cnn_attention-every": {"attention_every": 1},
    "cnn_mlp-stack": {"stack": 2},
    "lstm-sinusoidal": {"pos_embedding": "sinusoidal"},
    "mamba-learned": {"pos_embedding": "learned"},
    "gla-stack": {"stack": 2},
    "transformer-speedrun": {"qk_norm": True, "mlp": "relu2", "value_residual": True, "unet": True, "softcap": 15.0,
                             "tie_embeddings": False, "n_layer": 3},
    "cnn_attention-speedrun": {"qk_norm": True, "value_residual": True, "softcap": 10.0, "attention_every": 1},
})
CONTEXT = 20


def make(variant: str):
    torch.manual_seed(0)
    name = variant.split("-")[0]
    return build_model(name, vocab_size=37, context=CONTEXT, **{**model_class(name).debug, **VARIANTS[variant]}).eval()


@pytest.mark.parametrize("prompt_length", [1, 7])
@pytest.mark.parametrize("variant", VARIANTS)
def test_prefill_and_steps_equal_full_forward(variant, prompt_length):
    model = make(variant)
    tokens = torch.randint(0, 37, (3, CONTEXT))
    with torch.no_grad():
        full = model(tokens)
    state = model.init_state(3)
    logits, state = model.prefill(tokens[:, :prompt_length], state)
    torch.testing.assert_close(logits, full[:, prompt_length - 1], rtol=0, atol=1e-5)
    for t in range(prompt_length, CONTEXT):
        logits, state = model.step(tokens[:, t : t + 1], state)
        torch.testing.assert_close(logits, full[:, t], rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_past_the_context_follows_the_documented_policy(variant):
    """Streaming models equal a full forward over everything; others a forward over their window."""
    model = make(variant)
    tokens = torch.randint(0, 37, (2, int(2.6 * CONTEXT)))
    state = model.init_state(2)
    logits, state = model.prefill(tokens[:, :3], state)
    for t in range(3, tokens.shape[1]):
        logits, state = model.step(tokens[:, t : t + 1], state)
        assert bool((state.window_start == state.window_start[0]).all())  # rows that started together slide together
        window = tokens[:, int(state.window_start[0]) : t + 1]
        assert window.shape[1] <= CONTEXT or model.streams
        with torch.no_grad():
            expected = model(window)[:, -1]
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    assert bool((state.window_start == 0).all()) == model.streams


def test_long_prompt_is_cropped_to_the_window():
    model = make("transformer")
    tokens = torch.randint(0, 37, (1, 3 * CONTEXT))
    logits, state = model.prefill(tokens, model.init_state(1))
    with torch.no_grad():
        torch.testing.assert_close(logits, model(tokens[:, -CONTEXT:])[:, -1], rtol=0, atol=1e-5)
    assert state.window_start == 2 * CONTEXT


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("variant", ["transformer", "cnn_attention"])
def test_bfloat16_autocast_decoding_matches_full_forward(variant):
    """Under CPU autocast attention runs in float32 (layers.attend) and the KV cache follows suit."""
    model = make(variant)
    tokens = torch.randint(0, 37, (2, CONTEXT))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(tokens).float()
        logits, state = model.prefill(tokens[:, :4], model.init_state(2))
        for t in range(4, CONTEXT):
            logits, state = model.step(tokens[:, t : t + 1], state)
            torch.testing.assert_close(logits.float(), full[:, t], rtol=0, atol=0.05 * full[:, t].abs().max().item())


@pytest.mark.cpu_sensitive
def test_a_bfloat16_model_runs_and_decodes_on_the_cpu():
    model = make("transformer").to(torch.bfloat16)
    tokens = torch.randint(0, 37, (2, CONTEXT))
    with torch.no_grad():
        full = model(tokens)
    logits, state = model.prefill(tokens[:, :4], model.init_state(2))
    logits, state = model.step(tokens[:, 4:5], state)
    assert full.dtype == logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), full[:, 4].float(), rtol=0, atol=0.05 * full[:, 4].abs().max().item())


def decode_alone(model, row: torch.Tensor) -> torch.Tensor:
    """The logits after each token of `row` [T], decoded as a batch of one from a one-token prompt: [T, V]."""
    logits, state = model.prefill(row[None, :1], model.init_state(1))
    steps = [logits]
    for t in range(1, len(row)):
        logits, state = model.step(row[None, t : t + 1], state)
        steps.append(logits)
    return torch.cat(steps)


@pytest.mark.parametrize("variant", VARIANTS)
def test_rows_at_different_positions_decode_as_if_alone(variant):
    """A batch whose rows started at different times (a server's continuous batching) gives each row the
    logits it gets alone, while rows join, leave and, past the context, slide their windows."""
    model = make(variant)
    rows = torch.randint(0, 37, (3, int(2.2 * CONTEXT)))
    alone = [decode_alone(model, row) for row in rows]
    joins, leaves = {0: 0, 1: 5, 2: 11}, {1: 30}
    active, done, state = [], {}, None
    for clock in range(200):
        for r in [r for r, at in joins.items() if at == clock]:
            logits, joined = model.prefill(rows[r : r + 1, :1], model.init_state(1))
            state = joined if state is None else DecodeState.concat([state, joined])
            active.append(r)
            done[r] = 1
        leaving = [r for r in active if leaves.get(r) == clock or done[r] == rows.shape[1]]
        if leaving:
            keep = [i for i, r in enumerate(active) if r not in leaving]
            state = state.select(torch.tensor(keep, dtype=torch.long)) if keep else None
            active = [active[i] for i in keep]
        if not active:
            break
        logits, state = model.step(torch.stack([rows[r, done[r]] for r in active])[:, None], state)
        for i, r in enumerate(active):
            torch.testing.assert_close(logits[i], alone[r][done[r]], rtol=0, atol=1e-5)
            done[r] += 1
    assert done == {0: rows.shape[1], 1: 30 - 5 + 1, 2: rows.shape[1]}


@pytest.mark.parametrize("variant", [v for v in VARIANTS if make(v).streams])
def test_a_streaming_models_state_does_not_grow(variant):
    """Past the context, a model that streams keeps a state of one size however long the output runs."""
    model = make(variant)
    tokens = torch.randint(0, 37, (2, 6 * CONTEXT))
    logits, state = model.prefill(tokens[:, :2], model.init_state(2))

    def size() -> int:
        return sum(t.numel() for t in state.caches.values()) + state.history.numel()

    for t in range(2, tokens.shape[1]):
        logits, state = model.step(tokens[:, t : t + 1], state)
        if t == 2 * CONTEXT:
            after_two_contexts = size()
    assert size() == after_two_contexts
