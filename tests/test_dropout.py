"""CPU dropout from numpy masks: the right keep rate, an unbiased output, reproducible from torch's seed,
and attention dropout that drops probabilities, not outputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from pico_llm.models.dropout import Dropout, dropout, keep_mask
from pico_llm.models.layers import attend


def test_mask_keeps_one_minus_p_and_the_output_keeps_its_mean():
    torch.manual_seed(0)
    mask, q = keep_mask((1000, 1000), 0.2)
    assert mask.dtype == torch.bool and q == pytest.approx(0.2, abs=1e-5)
    assert mask.float().mean().item() == pytest.approx(0.8, abs=0.002)
    x = torch.ones(1000, 1000)
    assert dropout(x, 0.2, training=True).mean().item() == pytest.approx(1.0, abs=0.005)


def test_masks_follow_torch_seed_so_runs_and_resumes_repeat():
    layer = Dropout(0.5).train()
    x = torch.randn(64, 64)
    torch.manual_seed(1)
    first = layer(x)
    torch.manual_seed(1)
    again = layer(x)
    other = layer(x)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_eval_mode_and_zero_p_leave_the_input_alone():
    x = torch.randn(8, 8)
    assert Dropout(0.3).eval()(x) is x
    assert dropout(x, 0.0, training=True) is x


def test_gradients_flow_only_through_kept_elements():
    torch.manual_seed(2)
    x = torch.randn(32, 32, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert torch.all(x.grad[~kept] == 0)


def test_attention_dropout_drops_probabilities_with_the_mask_it_drew():
    """With dropout, each output row is the kept probabilities (rescaled) times the values."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 3, 16, 8) for _ in range(3))
    torch.manual_seed(4)
    out = attend(q, k, v, causal=True, dropout=0.3)
    torch.manual_seed(4)
    keep, dropped = keep_mask((2, 3, 16, 16), 0.3)
    causal = torch.ones(16, 16, dtype=torch.bool).tril()
    probs = torch.softmax((q @ k.mT / math.sqrt(8)).masked_fill(~causal, float("-inf")), dim=-1)
    expected = (probs * keep / (1 - dropped)) @ v
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(attend(q, k, v, causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_attention_dropout_honours_an_explicit_mask(kind):
    """A mask of either kind, per batch row, hides the same scores as in the plain formula."""
    torch.manual_seed(5)
    q, k, v = (torch.randn(2, 3, 16, 8) for _ in range(3))
    visible = torch.rand(2, 1, 16, 16) > 0.4
    visible[..., 0] = True  # every query sees at least one key
    mask = visible if kind == "bool" else torch.zeros(visible.shape).masked_fill(~visible, float("-inf"))
    torch.manual_seed(6)
    out = attend(q, k, v, causal=False, dropout=0.3, mask=mask)
    torch.manual_seed(6)
    keep, dropped = keep_mask((2, 3, 16, 16), 0.3)
    probs = torch.softmax((q @ k.mT / math.sqrt(8)).masked_fill(~visible, float("-inf")), dim=-1)
    assert torch.allclose(out, (probs * keep / (1 - dropped)) @ v, atol=1e-5)
