"""Matched-size comparisons: find each model's width that lands on a parameter budget."""

from __future__ import annotations

import torch

from ..errors import PicoError
from ..models.registry import build_model, model_class


def count_params(name: str, **fields) -> int:
    """Parameter count without allocating memory (the model is built on the meta device)."""
    with torch.device("meta"):
        return build_model(name, **fields).num_params()


def match_params(name: str, target: int, tolerance: float = 0.1, **fields) -> dict:
    """Fields (`fields` with the model's width replaced) whose parameter count is closest to `target`."""
    width_field, step = model_class(name).width_field, model_class(name).width_step
    if width_field is None:
        return fields
    fields = {k: v for k, v in fields.items() if k != width_field}
    lo, hi = 1, 4096 // step
    while lo < hi:  # smallest multiple of the step reaching the target
        mid = (lo + hi) // 2
        if count_params(name, **fields, **{width_field: mid * step}) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = [max(1, lo - 1) * step, lo * step]
    best = min(candidates, key=lambda w: abs(count_params(name, **fields, **{width_field: w}) - target))
    matched = {**fields, width_field: best}
    params = count_params(name, **matched)
    if abs(params - target) > tolerance * target:
        raise PicoError(f"{name} cannot reach {target:,} parameters within {tolerance:.0%} by its {width_field} ({params:,})")
    return matched
