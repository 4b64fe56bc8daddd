"""Muon and the schedules: the same updates as torch.optim.Muon, the right weights in each optimizer,
orthogonal updates, learning with every encoder, and the learning-rate shapes."""

import pytest
import torch
import torch.nn.functional as F

from pico_llm import TrainConfig, Trainer, build_model, load_corpus
from pico_llm.errors import PicoError
from pico_llm.models import model_class, model_names
from pico_llm.config import NS_COEFFICIENTS
from pico_llm.training.muon import (NS_SCHEDULES, Muon, newton_schulz, newton_schulz_on_gram, orthogonalize,
                                    step_coefficients)
from pico_llm.training.optimizers import ChainedOptimizer, build_optimizer, hidden_matrices


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("ns_steps", [5, 3])
def test_muon_takes_the_same_steps_as_torch_muon(ns_steps):
    """With bfloat16 Newton–Schulz (torch's only choice), a constant momentum and weight decay, every update
    equals torch.optim.Muon's bit for bit, for wide and tall matrices, alone or stacked with others of their shape,
    at the default five Newton–Schulz iterations and at fewer."""
    torch.manual_seed(0)
    weights = [torch.randn(24, 40), torch.randn(40, 24), torch.randn(24, 40), torch.randn(24, 40)]
    ours = [w.clone().requires_grad_() for w in weights]
    theirs = [w.clone().requires_grad_() for w in weights]
    our_muon = Muon(ours, lr=0.02, momentum=0.95, weight_decay=0.1, ns_steps=ns_steps, ns_dtype=torch.bfloat16)
    torch_muon = torch.optim.Muon(theirs, lr=0.02, momentum=0.95, weight_decay=0.1, ns_steps=ns_steps)
    for _ in range(4):
        grads = [torch.randn_like(w) for w in weights]
        for params, optimizer in ((ours, our_muon), (theirs, torch_muon)):
            for param, grad in zip(params, grads):
                param.grad = grad.clone()
            optimizer.step()
        for mine, reference in zip(ours, theirs):
            assert torch.equal(mine, reference)


def gradient_like(shape: tuple[int, ...]) -> torch.Tensor:
    """A float64 stack of unit-norm matrices whose singular values span three decades, as a gradient's do."""
    torch.manual_seed(0)
    u, _, v = torch.linalg.svd(torch.randn(shape, dtype=torch.float64), full_matrices=False)
    x = u @ torch.diag_embed(torch.logspace(0, -3, shape[-2], dtype=torch.float64).expand(*shape[:-2], -1)) @ v
    return x / x.norm(dim=(-2, -1), keepdim=True)


@pytest.mark.parametrize("coefficients", ["jordan", "polar_express"])
@pytest.mark.parametrize("shape", [(2, 16, 32), (2, 16, 88)])
def test_newton_schulz_on_the_gram_matrix_is_the_same_polynomial(shape, coefficients):
    """In float64 the Gram form (r×r products only) gives the direct iteration's result to 1e-10, on a
    gradient-like spectrum spanning three decades; in float32 it stays within 1e-3 of it, for both schedules."""
    x = gradient_like(shape)
    schedule = step_coefficients(coefficients, 5)
    direct = newton_schulz(x, schedule)
    assert torch.allclose(newton_schulz_on_gram(x, schedule), direct, rtol=0, atol=1e-10)
    error = (newton_schulz_on_gram(x.float(), schedule).double() - direct).norm() / direct.norm()
    assert error < 1e-3


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_polar_express_gets_closer_to_orthogonal_than_jordan_in_five_steps(dtype):
    """On a gradient-like spectrum, five Polar Express steps leave the typical singular value within 5% of 1
    and the smallest above 0.25, where Jordan's quintic leaves them near 0.8 and 0.15."""
    x = gradient_like((128, 384)).float()
    jordan = torch.linalg.svdvals(orthogonalize(x, 5, dtype, "jordan").float())
    polar = torch.linalg.svdvals(orthogonalize(x, 5, dtype, "polar_express").float())
    assert abs(polar.median() - 1) < 0.05 < abs(jordan.median() - 1)
    assert polar.min() > 0.25 > jordan.min()
    assert polar.max() < 1.2


@pytest.mark.cpu_sensitive
@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (16, 16, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_makes_every_singular_value_about_one(shape, dtype):
    """Keller Jordan's quintic leaves singular values spread around 1 (about 0.5 to 1.5) whatever the scale of
    its input (a gradient's singular values here span a factor of 4, a random matrix's)."""
    torch.manual_seed(0)
    matrix = 1000 * torch.randn(shape).reshape(shape[0], -1)
    assert torch.linalg.svdvals(matrix).max() > 1000
    singular = torch.linalg.svdvals(orthogonalize(matrix, dtype=dtype).float())
    assert singular.min() > 0.5 and singular.max() < 1.5


def test_the_train_config_picks_muons_newton_schulz_coefficients():
    model = build_model("transformer", vocab_size=40, context=16, **model_class("transformer").debug)
    config = TrainConfig(model="transformer", optimizer="muon", muon_ns_coefficients="polar_express", device="cpu")
    muon = build_optimizer(model, config, torch.device("cpu")).optimizers[0]
    assert muon.ns_coefficients == "polar_express"
    assert set(NS_COEFFICIENTS) == set(NS_SCHEDULES)  # the config offers exactly the schedules Muon has
    with pytest.raises(PicoError, match="muon_ns_coefficients"):
        TrainConfig(muon_ns_coefficients="newton")


def test_muon_warms_its_momentum_up_and_resumes_the_warm_up():
    param = torch.nn.Parameter(torch.zeros(4, 4))
    muon = Muon([param], momentum=0.95, momentum_warmup=10, ns_dtype=torch.float32)
    for _ in range(5):
        param.grad = torch.ones(4, 4)
        muon.step()
    assert muon._momentum(muon.param_groups[0], muon.state[param]["step"]) == pytest.approx(0.85 + 0.5 * 0.10)
    restored = Muon([param], momentum=0.95, momentum_warmup=10, ns_dtype=torch.float32)
    restored.load_state_dict(muon.state_dict())
    assert restored.state[param]["step"] == 5


def test_hidden_matrices_leave_embeddings_head_norms_and_biases_to_adamw():
    transformer = build_model("transformer", vocab_size=40, context=16, **model_class("transformer").debug)
    chosen = {name for name, p in transformer.named_parameters() if any(p is q for q in hidden_matrices(transformer))}
    expected = {f"blocks.{i}.{part}.weight" for i in range(2) for part in ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")}
    assert chosen == expected  # the tied embedding / head is not among them
    untied = build_model("transformer", vocab_size=40, context=16, tie_embeddings=False, **model_class("transformer").debug)
    assert not any(p is untied.head.weight for p in hidden_matrices(untied))
    cnn = build_model("kgram_cnn", vocab_size=40, context=16, **model_class("kgram_cnn").debug)
    assert any(p.dim() == 3 for p in hidden_matrices(cnn))  # conv kernels, flattened by Muon
    mamba = build_model("mamba", vocab_size=40, context=16, **model_class("mamba").debug)
    assert not any(p is mixer.conv.weight for mixer in mamba.mixers for p in hidden_matrices(mamba))  # depthwise


@pytest.mark.parametrize("name", model_names())
def test_every_encoder_learns_with_muon(name):
    torch.manual_seed(0)
    model = build_model(name, vocab_size=16, context=24, **model_class(name).debug)
    config = TrainConfig(model=name, optimizer="muon", muon_lr=0.02, muon_ns_steps=4, lr=3e-3, dtype="float32", device="cpu")
    optimizer = build_optimizer(model, config, torch.device("cpu"))
    assert isinstance(optimizer, ChainedOptimizer) == bool(hidden_matrices(model))  # an LSTM's weights are not Linear
    assert all(group["ns_steps"] == 4 for group in optimizer.param_groups if "ns_steps" in group)
    every = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert every == {id(p) for p in model.parameters()}  # each weight in exactly one of the two
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))
    tokens = torch.arange(25).remainder(16).repeat(8, 1)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def lr_factors(text_file, **fields) -> list[float]:
    torch.manual_seed(0)
    model = build_model("kgram_mlp", vocab_size=256, context=16, k=2, hidden=16, embed_dim=8)
    config = TrainConfig(data=str(text_file), max_steps=100, warmup_steps=10, min_lr_ratio=0.1, dtype="float32",
                         device="cpu", **fields)
    trainer = Trainer(model, load_corpus(text_file, "byte"), config)
    factors = []
    for step in range(100):
        trainer.step = step
        factors.append(trainer.lr_factor())
    return factors


def test_wsd_warms_up_holds_then_cools_down_linearly(text_file):
    factors = lr_factors(text_file, schedule="wsd", cooldown=0.4)
    assert factors[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert factors[10:60] == pytest.approx([1.0] * 50)
    cooling = factors[60:]
    assert cooling == pytest.approx([0.1 + 0.9 * (100 - s) / 40 for s in range(60, 100)])


def test_cosine_falls_smoothly_to_the_floor(text_file):
    factors = lr_factors(text_file, schedule="cosine")
    assert factors[10] == pytest.approx(0.1 + 0.45 * (1 + torch.cos(torch.tensor(0.1 * torch.pi)).item()))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
