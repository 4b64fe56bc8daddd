"""Matched-size comparisons: find each model's width that lands on a parameter budget."""

from __future__ import annotations

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
    largest = MAX_WIDTH // step
    hi = 1
    while hi < largest and count_params(name, **fields, **{width_field: hi * step}) < target:
        hi = min(2 * hi, largest)  # doubling first: no model the search builds is far above the target
    lo = max(1, hi // 2)
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
