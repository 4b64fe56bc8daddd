"""Muon (Jordan et al. 2024): SGD with Nesterov momentum whose update is orthogonalised by Newton–Schulz.

The update of a weight matrix is replaced by the nearest semi-orthogonal matrix (all singular values
close to 1), computed by five iterations of a quintic Newton–Schulz polynomial: Keller Jordan's,
the same at every step, or the Polar Express schedule (Amsel et al. 2025, the speedrun's since
2025), a different quintic at each step, each optimal for the spread of singular values the step
before leaves, which gets closer to 1 in fewer iterations. Every direction of
the matrix then moves at the same rate, which is where Muon's speed-up over AdamW comes from (the
modded-nanogpt speedrun's largest single gain). It is meant for the hidden 2-D weights only;
embeddings, the output head, norms and biases stay with AdamW (`optimizers.build_optimizer`).

This computes exactly what `torch.optim.Muon` computes (same momentum, coefficients, learning-rate
scaling by sqrt(max(1, rows / cols)) and decoupled weight decay; `tests/test_optimizers.py` checks
the updates are equal), with three differences that small models on CPUs need:

- `ns_dtype`: torch's Newton–Schulz always runs in bfloat16, which a CPU without AVX512-BF16 only
  emulates (a 2048² bfloat16 matmul at 0.3 GFLOP/s against 89 in float32); here it runs in float32
  there, and in bfloat16 only where the hardware has it. In float32, a matrix at least twice as
  long as it is wide iterates on its small Gram matrix (`newton_schulz_on_gram`): the same
  polynomial in fewer FLOPs.
- conv kernels [out, in, k] are orthogonalised as [out, in·k] matrices, so a CNN's hidden weights
  get Muon too (torch's Muon accepts 2-D parameters only);
- weights of the same shape are orthogonalised together, as one stack of batched matmuls: a small
  model's Newton–Schulz is dominated by per-kernel overhead, not arithmetic.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

NS_SCHEDULES = {  # name: (the quintic (a, b, c) of each step, the last repeating; the scale on the input's norm)
    "jordan": (((3.4445, -4.7750, 2.0315),), 1.0),  # Keller Jordan's: the steepest slope at zero that still converges
    "polar_express": ((  # the speedrun's five steps, computed with a 2% safety factor (hence the norm × 1.02)
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.042929935166739, -2.808917465908714, 0.5000178451051316),
        (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
        (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
        (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
    ), 1.02),
}
EPS = 1e-7
WARMUP_MOMENTUM = 0.85  # where `momentum_warmup` starts
GRAM_FORM_MIN_ASPECT = 2  # long side / short side from which the Gram form has fewer FLOPs (break-even 1.75)


def step_coefficients(kind: str, steps: int) -> list[tuple[float, float, float]]:
    """The quintic (a, b, c) of each of `steps` iterations of schedule `kind`; past its end, its last repeats."""
    quintics, _ = NS_SCHEDULES[kind]
    return [quintics[min(step, len(quintics) - 1)] for step in range(steps)]


def orthogonalize(matrices: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16,
                  coefficients: str = "jordan") -> torch.Tensor:
    """≈ U·Vᵀ of each matrix = U·S·Vᵀ in `matrices` ([rows, cols] or a stack [n, rows, cols]), in `dtype`.

    Singular values end between about 0.5 and 1.5 with Jordan's quintic (`coefficients`, one of
    NS_SCHEDULES), closer to 1 with Polar Express's. A stack runs as batched matmuls: a model's
    same-shaped weights (every layer's query projection, say) cost one kernel per product.
    """
    x = matrices.to(dtype)
    stacked = x.dim() == 3
    if not stacked:
        x = x.unsqueeze(0)
    wide = x.shape[-2] <= x.shape[-1]
    if not wide:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * NS_SCHEDULES[coefficients][1]).clamp(min=EPS)  # spectral ≤ 1
    schedule = step_coefficients(coefficients, steps)
    long_enough = x.shape[-1] >= GRAM_FORM_MIN_ASPECT * x.shape[-2]
    x = newton_schulz_on_gram(x, schedule) if long_enough and dtype.itemsize >= 4 else newton_schulz(x, schedule)
    x = x if wide else x.mT
    return x if stacked else x[0]


def newton_schulz(x: torch.Tensor, schedule: list[tuple[float, float, float]]) -> torch.Tensor:
    """The quintic iteration X ← a·X + (b·A + c·A²)·X, A = X·Xᵀ, on a stack of wide matrices [n, r, m],
    once for each (a, b, c) of `schedule`."""
    for a, b, c in schedule:
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x


def newton_schulz_on_gram(x: torch.Tensor, schedule: list[tuple[float, float, float]]) -> torch.Tensor:
    """The same iteration carried on the small r×r Gram matrix, for wide matrices [n, r, m] with m ≥ 2r.

    Every iterate is X_k = Q_k·X_0 with Q_k a polynomial in A_0 = X_0·X_0ᵀ, so A_k = Q_k²·A_0 and
    the step is Q ← P·Q, A ← P·A·P with P = a·I + b·A + c·A²: r×r products only, and X_0 is read
    twice instead of twice a step (30-50% fewer FLOPs for m = 3r to 5.5r). Equal in exact
    arithmetic; squaring the Gram loses precision, so only for float32 and wider (about 1e-4 from
    the direct form in float32, where torch's bfloat16 iteration is about 5e-2 from it).
    """
    gram = x @ x.mT
    identity = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    product = None
    for step, (a, b, c) in enumerate(schedule):
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c) + a * identity
        product = poly if product is None else poly @ product
        if step + 1 < len(schedule):
            gram = poly @ gram @ poly
    return product @ x


class Muon(torch.optim.Optimizer):
    """Muon for weights of two or more dimensions (flattened to [rows, rest]); see the module docstring.

    `momentum_warmup` > 0 raises the momentum linearly from 0.85 to `momentum` over that many steps,
    as the speedrun does (a high momentum from the first step overshoots); each weight counts its
    own steps in its state, so a checkpoint resumes the warm-up where it was.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0,
                 nesterov: bool = True, ns_steps: int = 5, momentum_warmup: int = 0,
                 ns_dtype: torch.dtype = torch.bfloat16, ns_coefficients: str = "jordan"):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov,
                                  "ns_steps": ns_steps, "momentum_warmup": momentum_warmup})
        if ns_coefficients not in NS_SCHEDULES:
            raise ValueError(f"ns_coefficients must be one of {', '.join(NS_SCHEDULES)}, got {ns_coefficients!r}")
        self.ns_dtype = ns_dtype
        self.ns_coefficients = ns_coefficients
        for group in self.param_groups:
            for param in group["params"]:
                if param.dim() < 2:
                    raise ValueError(f"Muon trains matrices and conv kernels only, got a parameter of shape {tuple(param.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            by_shape: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
            for param in params:
                update = self._momentum_update(group, param)
                matrix = update.reshape(update.shape[0], -1)
                by_shape[tuple(matrix.shape)].append((param, matrix))
            for (rows, cols), members in by_shape.items():
                directions = orthogonalize(torch.stack([matrix for _, matrix in members]), group["ns_steps"],
                                           self.ns_dtype, self.ns_coefficients)
                scale = group["lr"] * math.sqrt(max(1.0, rows / cols))
                for (param, _), direction in zip(members, directions):
                    param.mul_(1 - group["lr"] * group["weight_decay"])
                    param.add_(direction.reshape(param.shape).to(param.dtype), alpha=-scale)
        return loss

    def _momentum_update(self, group: dict, param: torch.Tensor) -> torch.Tensor:
        """The (Nesterov) momentum update of `param`, its buffer advanced by this step's gradient."""
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"], state["step"] = torch.zeros_like(param.grad), 0
        momentum = self._momentum(group, state["step"])
        state["step"] += 1
        buffer = state["momentum_buffer"]
        buffer.lerp_(param.grad, 1 - momentum)
        return param.grad.lerp(buffer, momentum) if group["nesterov"] else buffer

    @staticmethod
    def _momentum(group: dict, step: int) -> float:
        if not group["momentum_warmup"]:
            return group["momentum"]
        warmed = min(1.0, step / group["momentum_warmup"])
        return WARMUP_MOMENTUM + warmed * (group["momentum"] - WARMUP_MOMENTUM)
