"""Contracts every encoder keeps: shapes, causality, config round-trip, checkpoint round-trip."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from pico_llm.errors import PicoError
from pico_llm.models import build_model, model_class, model_names, model_spec
from pico_llm.models.layers import RMSNorm
from pico_llm.training.checkpoint import load_checkpoint, save_checkpoint

# Every registered encoder in its debug flavour, plus variants that exercise options.
VARIANTS = {name: {} for name in model_names()}
VARIANTS.update({
    "kgram_mlp-ln-pos": {"layer_norm": True, "pos_embedding": "learned", "k": 5},
    "kgram_mlp-stack": {"stack": 3},
    "kgram_cnn-attention-pool": {"kernel_sizes": (2, 3, 5), "aggregation": "attention"},
    "kgram_cnn-plain": {"kernel_sizes": (2, 4), "gated": False, "layer_norm": False, "dilation_base": 1},
    "kgram_cnn-sinusoidal": {"pos_embedding": "sinusoidal"},
    "transformer-classic": {"norm": "layernorm", "mlp": "gelu", "pos_embedding": "learned", "tie_embeddings": False},
    "transformer-stack": {"stack": 2, "pos_embedding": "none"},
    "cnn_attention-learned": {"pos_embedding": "learned", "attention_every": 1},
    "mamba-learned-stack": {"pos_embedding": "learned", "stack": 2, "expand": 1},
    "gla-gelu": {"mlp": "gelu", "key_ratio": 1.0},
    "kgram_cnn-relu2": {"gated": False, "activation": "relu2"},
    "kgram_cnn-no-mlp": {"mlp_ratio": 0.0, "activation": "gelu"},
    "transformer-speedrun": {"qk_norm": True, "mlp": "relu2", "value_residual": True, "unet": True, "softcap": 15.0,
                             "tie_embeddings": False, "n_layer": 3},
    "cnn_attention-speedrun": {"qk_norm": True, "mlp": "relu2", "value_residual": True, "softcap": 10.0,
                               "attention_every": 1},
})


def make(variant: str, context: int = 48):
    torch.manual_seed(0)
    name = variant.split("-")[0]
    fields = {**model_class(name).debug, **VARIANTS[variant]}
    return build_model(name, vocab_size=61, context=context, **fields).eval()


def test_every_family_is_registered():
    assert {"kgram_mlp", "kgram_cnn", "transformer", "lstm", "cnn_attention", "cnn_mlp", "mamba", "gla"} <= set(model_names())


@pytest.mark.parametrize("name", ["mamba", "gla"])
def test_chunked_training_form_does_not_depend_on_the_chunk(name):
    """The chunkwise-parallel form (quadratic inside a chunk, recurrent across) is one computation whatever
    the chunk: chunks of 1 (a pure recurrence), 5 (ragged: 48 is not a multiple) and 24 (two chunks) agree."""
    tokens = torch.randint(0, 61, (2, 48))
    logits = []
    for chunk in (1, 5, 24):
        torch.manual_seed(0)
        model = build_model(name, vocab_size=61, context=48, **{**model_class(name).debug, "chunk": chunk}).eval()
        with torch.no_grad():
            logits.append(model(tokens))
    for other in logits[1:]:
        torch.testing.assert_close(other, logits[0], rtol=0, atol=1e-5)


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", model_names())
def test_a_few_steps_lower_the_loss(name, dtype):
    """Also under bfloat16 autocast on the CPU, which `--dtype auto` picks where it is faster."""
    torch.manual_seed(0)
    model = build_model(name, vocab_size=16, context=24, **model_class(name).debug)
    tokens = torch.arange(25).remainder(16).repeat(8, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes(variant):
    model = make(variant)
    assert model(torch.randint(0, 61, (3, 48))).shape == (3, 48, 61)
    assert model(torch.randint(0, 61, (2, 7))).shape == (2, 7, 61)
    assert model.num_params() > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_causal(variant):
    """Logits at positions ≤ t do not change when tokens after t change."""
    model = make(variant)
    tokens = torch.randint(0, 61, (2, 48))
    reference = model(tokens)
    for t in (0, 11, 30, 46):
        changed = tokens.clone()
        changed[:, t + 1 :] = torch.randint(0, 61, changed[:, t + 1 :].shape)
        logits = model(changed)
        torch.testing.assert_close(logits[:, : t + 1], reference[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(logits[:, t + 1 :], reference[:, t + 1 :])


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_json_round_trip_rebuilds_identical_model(variant, tmp_path):
    model = make(variant)
    spec = json.loads(json.dumps(model_spec(model)))
    rebuilt = build_model(spec).eval()
    assert dataclasses.asdict(rebuilt.config) == dataclasses.asdict(model.config)
    save_checkpoint({"model_spec": spec, "model": model.state_dict()}, tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    rebuilt.load_state_dict(state["model"])
    tokens = torch.randint(0, 61, (2, 48))
    torch.testing.assert_close(rebuilt(tokens), model(tokens), rtol=0, atol=0)


def test_cnn_dilations_reach_far_and_no_further():
    model = build_model("kgram_cnn", vocab_size=20, context=64, width=16, n_layers=3, kernel_sizes=(3,)).eval()
    assert model.receptive_field() == 1 + 2 * (1 + 2 + 4)
    tokens = torch.randint(0, 20, (1, 64))
    base = model(tokens)[0, -1]
    inside, outside = tokens.clone(), tokens.clone()
    inside[0, 64 - model.receptive_field()] = (tokens[0, 64 - model.receptive_field()] + 1) % 20
    outside[0, 63 - model.receptive_field()] = (tokens[0, 63 - model.receptive_field()] + 1) % 20
    assert not torch.allclose(model(inside)[0, -1], base)
    torch.testing.assert_close(model(outside)[0, -1], base, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["transformer", "cnn_attention", "kgram_cnn"])
def test_zero_init_starts_every_block_as_the_identity_and_then_learns(name):
    """With `zero_init` the logits at t depend on token t alone (no block adds anything yet); one step later
    they depend on the context: the zeroed projections receive gradients."""
    torch.manual_seed(0)
    model = build_model(name, vocab_size=61, context=32, zero_init=True, **model_class(name).debug)
    tokens = torch.randint(0, 61, (2, 32))
    changed = tokens.clone()
    changed[:, :-1] = torch.randint(0, 61, (2, 31))
    torch.testing.assert_close(model(changed)[:, -1], model(tokens)[:, -1], rtol=0, atol=1e-6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
    optimizer.step()
    assert not torch.allclose(model(changed)[:, -1], model(tokens)[:, -1], atol=1e-4)


def test_zero_init_makes_each_conv_block_with_its_mlp_the_identity():
    """Position-wise MLPs do not mix positions, so the test above cannot see them: check each block directly."""
    torch.manual_seed(0)
    model = build_model("kgram_cnn", vocab_size=61, context=32, zero_init=True, mlp_ratio=2.0, **model_class("kgram_cnn").debug)
    x = torch.randn(2, model.config.width, 32)
    for block in model.features.blocks:
        torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    model.features.blocks[0].mlp.down.bias.data.fill_(0.1)
    assert not torch.equal(model.features.blocks[0](x), x)


def test_softcap_bounds_the_logits():
    torch.manual_seed(0)
    model = build_model("transformer", vocab_size=61, context=16, softcap=2.0, **model_class("transformer").debug)
    with torch.no_grad():
        model.head.weight.mul_(1000)
    logits = model(torch.randint(0, 61, (2, 16)))
    assert logits.abs().max() <= 2.0 and logits.abs().max() > 1.9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rmsnorm_training_path_matches_torchs_values_and_gradients(dtype):
    """The CPU training path (`_CPURMSNorm`) against `F.rms_norm` with autograd, on an uneven spectrum of rows."""
    torch.manual_seed(0)
    norm = RMSNorm(24).to(dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = (torch.randn(3, 5, 24, dtype=dtype) * torch.logspace(-2, 2, 5, dtype=dtype)[:, None]).requires_grad_()
    grad = torch.randn(3, 5, 24, dtype=dtype)
    ours = norm(x)
    ours_grads = torch.autograd.grad(ours, (x, norm.weight), grad)
    reference = F.rms_norm(x, (24,), norm.weight, norm.eps)
    reference_grads = torch.autograd.grad(reference, (x, norm.weight), grad)
    tolerance = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(ours, reference, **tolerance)
    for got, want in zip(ours_grads, reference_grads):
        torch.testing.assert_close(got, want, **tolerance)
    assert ours.grad_fn is not None and type(ours.grad_fn).__name__ == "_CPURMSNormBackward"
    assert torch.autograd.gradcheck(lambda t: norm.double()(t), (x.detach().double().requires_grad_(),))


def test_rmsnorm_training_path_stays_float32_under_bfloat16_autocast():
    """CPU autocast runs `vecdot` in bfloat16; the norm must not (its scale would be off by up to 0.4%)."""
    torch.manual_seed(0)
    norm, x = RMSNorm(64), torch.randn(4, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = norm(x)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, F.rms_norm(x, (64,), norm.weight, norm.eps), rtol=1e-6, atol=1e-6)


BAD_CONFIGS = [
    ("kgram_cnn", {"aggregation": "mean"}, "`aggregation` must be one of max, attention, got 'mean'"),
    ("kgram_mlp", {"width": 3}, "no field `width`"),
    ("kgram_mlp", {"k": 0}, "`k` must be ≥ 1, got 0"),
    ("kgram_cnn", {"pos_embedding": "rotary"}, "`pos_embedding` must be one of none, learned, sinusoidal"),
    ("transformer", {"n_embd": 30, "n_head": 4}, "`n_embd` 30 must be divisible by `n_head` 4"),
    ("cnn_attention", {"width": 30, "n_head": 2}, "`width` / `n_head` must be even, got 15"),
    ("transformer", {"norm": "batchnorm"}, "`norm` must be one of rmsnorm, layernorm"),
    ("cnn_attention", {"mlp": "relu"}, "`mlp` must be one of gelu, swiglu"),
    ("transformer", {"n_head": 0}, "`n_head` must be ≥ 1, got 0"),
    ("kgram_cnn", {"kernel_sizes": ()}, "`kernel_sizes` must list at least one width"),
    ("kgram_cnn", {"kernel_sizes": (3, 0)}, "`kernel_sizes` must be ≥ 1, got 0"),
    ("lstm", {"dropout": float("nan")}, "`dropout` must be a finite number, got nan"),
    ("kgram_mlp", {"dropout": 2}, "`dropout` must be ≥ 0.0 and < 1.0, got 2.0"),
    ("transformer", {"dropout": float("inf")}, "`dropout` must be a finite number, got inf"),
    ("kgram_mlp", {"k": "3"}, "`k` must be a whole number, got '3'"),
    ("cnn_mlp", {"mlp_layers": True}, "`mlp_layers` must be a whole number, got True"),
    ("lstm", {"hidden": 2.0}, "`hidden` must be a whole number, got 2.0"),
    ("transformer", {"tie_embeddings": 1}, "`tie_embeddings` must be true or false, got 1"),
    ("kgram_mlp", {"context": 0}, "`context` must be ≥ 1 and ≤ 1048576, got 0"),
    ("lstm", {"vocab_size": 1 << 25}, "`vocab_size` must be ≥ 1 and ≤ 16777216"),
    ("kgram_cnn", {"gated": False, "activation": "relu2", "zero_init": True}, "`zero_init` with an ungated relu2 conv"),
    ("transformer", {"softcap": -1.0}, "`softcap` must be ≥ 0.0, got -1.0"),
    ("kgram_cnn", {"activation": "tanh"}, "`activation` must be one of gelu, relu2, got 'tanh'"),
]


@pytest.mark.parametrize(("name", "fields", "message"), BAD_CONFIGS)
def test_bad_config_values_are_rejected(name, fields, message):
    """One PicoError line naming the field, whichever model and whatever the kind of mistake."""
    with pytest.raises(PicoError) as caught:
        build_model(name, **{**model_class(name).debug, **fields})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_good_edge_values_are_accepted():
    build_model("transformer", n_embd=30, n_head=2, pos_embedding="learned")
    config = build_model("kgram_cnn", kernel_sizes=[2, 3], dropout=0).config  # JSON gives lists and whole numbers
    assert config.kernel_sizes == (2, 3) and type(config.dropout) is float
