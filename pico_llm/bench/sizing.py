"""Matched-size comparisons: find each model's width that lands on a parameter budget."""

from __future__ import annotations

import functools

from ..errors import PicoError
from ..models.registry import build_model, model_class

MAX_WIDTH = 4096


def count_params(name: str, **fields) -> int:
    """Parameter count of the model `fields` describe, built on the CPU.

    The meta device would skip the allocation, but its first use in a process costs 1.9 s (every
    child of a bench suite paid it), more than building the small models a search visits.
    """
    return build_model(name, **fields).num_params()


def match_params(name: str, target: int, tolerance: float = 0.1, **fields) -> dict:
    """Fields (`fields` with the model's width replaced) whose parameter count is closest to `target`."""
    width_field, step = model_class(name).width_field, model_class(name).width_step
    if width_field is None:
        return fields
    fields = {k: v for k, v in fields.items() if k != width_field}

    @functools.cache
    def params_at(units: int) -> int:  # each width is built once, though the search visits some twice
        return count_params(name, **fields, **{width_field: units * step})

    largest = MAX_WIDTH // step
    hi = 1
    while hi < largest and params_at(hi) < target:
        hi = min(2 * hi, largest)  # doubling first: the largest model built has about 4x the target's parameters
    lo = max(1, hi // 2)
    while lo < hi:  # smallest multiple of the step reaching the target
        mid = (lo + hi) // 2
        if params_at(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    best = min((max(1, lo - 1), lo), key=lambda units: abs(params_at(units) - target))
    if abs(params_at(best) - target) > tolerance * target:
        raise PicoError(f"{name} cannot reach {target:,} parameters within {tolerance:.0%} by its {width_field} ({params_at(best):,})")
    return {**fields, width_field: best * step}
