"""Weight layout for decoding one sequence on the CPU: every Linear weight stored column-major.

A decoding step multiplies one row of activations by every weight matrix, so its speed is that of
the BLAS matrix-vector product. `nn.Linear` keeps its weight [out, in] row-major, which MKL reads
as a transposed product; the same values stored column-major (the transpose contiguous) take its
plain path: the 25 one-row products of the 10.65M transformer ran 1.41x faster so on an AVX2-only
EPYC (3.05 against 2.16 ms), and its exact decoding 1.14x (BENCHMARKS.md). Products of 4-128 rows
ran 3-10% slower that way, so batched serving keeps the training layout. Only the summation order
changes: logits move by rounding (about 1e-6).
"""

from __future__ import annotations

from torch import nn


def column_major(model: nn.Module) -> nn.Module:
    """Store every CPU Linear weight of `model` column-major, in place; values, shapes and ties unchanged."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.device.type == "cpu":
            module.weight.data = module.weight.data.t().contiguous().t()
    return model
