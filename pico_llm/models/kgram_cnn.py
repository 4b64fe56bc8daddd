"""K-gram CNN: a residual stack of causal, optionally dilated, multi-branch 1-D convolutions.

Each block normalises its input, runs parallel convolution branches of different kernel widths (each
padded on the left only, so position t never sees t+1), aggregates the branches per position by
max-pooling or by a softmax-weighted ("attention-like") sum, and adds the result to the residual
stream. Dilations that double per layer (1, 2, 4, ...) give a receptive field that grows
exponentially with depth, the WaveNet recipe for long range at a small cost. With `mlp_ratio` > 0
a block also runs a position-wise MLP after its convolution (the MetaFormer layout of transformers
and ConvNeXt: one sublayer mixes positions, the next mixes channels), which at a matched parameter
count reached lower loss per second than a deeper or wider plain stack (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..errors import PicoError
from .base import BaseConfig, LanguageModel
from .dropout import Dropout
from .processors import TokenInput, tail
from .registry import register_model

AGGREGATIONS = ("max", "attention")
ACTIVATIONS = ("gelu", "relu2")


@dataclass
class KgramCNNConfig(BaseConfig):
    width: int = option(144, min=1)
    n_layers: int = option(6, min=1)
    kernel_sizes: tuple[int, ...] = option((3,), min=1)
    dilation_base: int = option(2, min=1)
    dilation_cycle: int = option(8, min=1)
    gated: bool = True
    activation: str = option("relu2", choices=ACTIVATIONS)  # of the MLP and an ungated branch (a gated one is a GLU)
    layer_norm: bool = True
    aggregation: str = option("max", choices=AGGREGATIONS)
    dropout: float = option(0.0, min=0.0, below=1.0)
    mlp_ratio: float = option(3.0, min=0.0)  # > 0: each block adds a position-wise MLP that wide (MetaFormer); 0: none
    zero_init: bool = False  # blocks start as the identity: a GLU's value half (or a GELU conv) and the MLP's output are zero

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.kernel_sizes:
            raise PicoError("`kernel_sizes` must list at least one width, e.g. [3]")
        if self.zero_init and not self.gated and self.activation == "relu2":
            raise PicoError("`zero_init` with an ungated relu2 conv would never learn (relu² has no gradient at 0); "
                            "use `gated` true or `activation` gelu")

    def dilation(self, layer: int) -> int:
        return self.dilation_base ** (layer % self.dilation_cycle)


def activate(h: torch.Tensor, kind: str) -> torch.Tensor:
    """ReLU² (relu(h)², two cheap kernels) or GELU: the `activation` of an ungated branch and of the MLP."""
    return F.relu(h).square() if kind == "relu2" else F.gelu(h)


class CausalConv1d(nn.Conv1d):
    """Conv1d on [B, C, T] padded on the left only: output t depends on inputs ≤ t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ConvBranch(nn.Module):
    """One kernel width: causal conv, then GLU (gated), GELU or ReLU²."""

    def __init__(self, width: int, kernel_size: int, dilation: int, gated: bool, activation: str = "gelu"):
        super().__init__()
        self.gated = gated
        self.activation = activation
        self.conv = CausalConv1d(width, 2 * width if gated else width, kernel_size, dilation)

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return F.glu(h, dim=1)
        return activate(h, self.activation)

    def zero_outputs(self) -> None:
        """The branch outputs zero at first but still learns: the GLU's value half (or the whole GELU conv) is zero."""
        values = self.conv.out_channels // 2 if self.gated else self.conv.out_channels
        nn.init.zeros_(self.conv.weight[:values])
        nn.init.zeros_(self.conv.bias[:values])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x))

    def step(self, buffer: torch.Tensor) -> torch.Tensor:
        """One output position from the block's input buffer [B, C, span] (newest last)."""
        kernel, dilation = self.conv.kernel_size[0], self.conv.dilation[0]
        taps = buffer[:, :, buffer.shape[2] - 1 - (kernel - 1) * dilation :: dilation]
        return self.activate(F.conv1d(taps, self.conv.weight, self.conv.bias))


class PointwiseMLP(nn.Module):
    """Pre-norm position-wise MLP on [B, C, T]: mixes channels after the convolution mixed positions."""

    def __init__(self, config: KgramCNNConfig):
        super().__init__()
        hidden = max(1, round(config.mlp_ratio * config.width))
        self.norm = nn.LayerNorm(config.width) if config.layer_norm else nn.Identity()
        self.up = nn.Linear(config.width, hidden)
        self.down = nn.Linear(hidden, config.width)
        self.activation = config.activation
        self.dropout = Dropout(config.dropout)

    def zero_outputs(self) -> None:
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = activate(self.up(self.norm(x.transpose(1, 2))), self.activation)
        return x + self.dropout(self.down(h)).transpose(1, 2)


class ConvBlock(nn.Module):
    """Pre-norm residual block of parallel conv branches, aggregated per position."""

    def __init__(self, config: KgramCNNConfig, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(config.width) if config.layer_norm else nn.Identity()
        self.branches = nn.ModuleList(
            ConvBranch(config.width, k, dilation, config.gated, config.activation) for k in config.kernel_sizes
        )
        self.aggregation = config.aggregation
        self.span = (max(config.kernel_sizes) - 1) * dilation + 1
        if config.aggregation == "attention" and len(self.branches) > 1:
            self.branch_query = nn.Parameter(torch.zeros(config.width))
        self.dropout = Dropout(config.dropout)
        self.mlp = PointwiseMLP(config) if config.mlp_ratio > 0 else None

    def aggregate(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        if len(outputs) == 1:
            return outputs[0]
        stacked = torch.stack(outputs, dim=1)  # [B, branches, C, T]
        if self.aggregation == "max":
            return stacked.amax(dim=1)
        scores = torch.einsum("bnct,c->bnt", stacked, self.branch_query) / stacked.shape[2] ** 0.5
        return torch.einsum("bnct,bnt->bct", stacked, scores.softmax(dim=1))

    def zero_outputs(self) -> None:
        for branch in self.branches:
            branch.zero_outputs()
        if self.mlp is not None:
            self.mlp.zero_outputs()

    def normed(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, caches: dict | None = None, key: str = "") -> torch.Tensor:
        """x: [B, C, T]. With `caches`, keep the last `span` normalised inputs for decoding."""
        h = self.normed(x)
        if caches is not None:
            caches[key] = tail(h, self.span, dim=2)
        return self.mixed(x + self.dropout(self.aggregate([branch(h) for branch in self.branches])))

    def mixed(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mlp is None else self.mlp(x)

    def step(self, x: torch.Tensor, caches: dict, key: str) -> torch.Tensor:
        """x: [B, C, 1], one new position; costs O(kernel) per branch whatever the sequence length."""
        buffer = torch.cat([caches[key], self.normed(x)], dim=2)[:, :, 1:]
        caches[key] = buffer
        return self.mixed(x + self.aggregate([branch.step(buffer) for branch in self.branches]))


class ConvStack(nn.Module):
    """Token input and the residual conv blocks: [B, T] ids -> [B, C, T] features (used by hybrids too)."""

    def __init__(self, config: KgramCNNConfig):
        super().__init__()
        self.config = config
        self.input = TokenInput(config, config.width, config.dropout)
        self.blocks = nn.ModuleList(ConvBlock(config, config.dilation(i)) for i in range(config.n_layers))
        if config.zero_init:
            for block in self.blocks:
                block.zero_outputs()

    def receptive_field(self) -> int:
        """How many tokens (including the current one) can influence a prediction."""
        reach = sum((max(self.config.kernel_sizes) - 1) * self.config.dilation(i) for i in range(self.config.n_layers))
        return reach + self.config.stack

    def forward(self, tokens: torch.Tensor, state=None) -> torch.Tensor:
        caches = None if state is None else state.caches
        x = self.input(tokens, state).transpose(1, 2)  # [B, C, T]: the layout conv1d wants
        for i, block in enumerate(self.blocks):
            x = block(x, caches, f"conv{i}")
        return x

    def step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        """Features [B, C, 1] of one new token per row, from the per-layer buffers."""
        x = self.input.step(tokens, state).transpose(1, 2)
        for i, block in enumerate(self.blocks):
            x = block.step(x, state.caches, f"conv{i}")
        return x


@register_model("kgram_cnn")
class KgramCNN(LanguageModel):
    Config = KgramCNNConfig
    description = "residual causal multi-branch 1-D CNN with dilations, GLU, max/attention pooling and position-wise MLPs"
    debug: ClassVar[dict] = {"width": 16, "n_layers": 3, "kernel_sizes": (2, 3)}
    width_field = "width"

    def __init__(self, config: KgramCNNConfig):
        super().__init__(config)
        self.features = ConvStack(config)
        self.norm = nn.LayerNorm(config.width) if config.layer_norm else nn.Identity()
        self.head = nn.Linear(config.width, config.vocab_size)

    def receptive_field(self) -> int:
        return self.features.receptive_field()

    @property
    def streams(self) -> bool:
        return self.config.pos_embedding == "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(tokens).transpose(1, 2)))

    def _prefill(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.head(self.norm(self.features(tokens, state)[:, :, -1]))

    def _step(self, tokens: torch.Tensor, state) -> torch.Tensor:
        return self.head(self.norm(self.features.step(tokens, state)[:, :, -1]))
