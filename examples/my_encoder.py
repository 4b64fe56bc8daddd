"""A complete encoder in one file: register it, then train it like any built-in one.

    pico-llm train --plugins examples/my_encoder.py --model running_mean --hidden 256

The model: each position sees its own token embedding and the running mean of all embeddings so
far (a cumulative sum divided by the count, so causal and vectorised), through an MLP.
"""

from dataclasses import dataclass

import torch
from torch import nn

from pico_llm import BaseConfig, LanguageModel, register_model
from pico_llm.models.processors import TokenInput


@dataclass
class RunningMeanConfig(BaseConfig):
    embed_dim: int = 64
    hidden: int = 256


@register_model("running_mean")
class RunningMean(LanguageModel):
    Config = RunningMeanConfig
    description = "current token + running mean of all previous tokens, through an MLP (example plugin)"
    debug = {"embed_dim": 16, "hidden": 32}

    def __init__(self, config: RunningMeanConfig):
        super().__init__(config)
        self.input = TokenInput(config, config.embed_dim)
        self.mlp = nn.Sequential(nn.Linear(2 * config.embed_dim, config.hidden), nn.GELU())
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.input(tokens)
        counts = torch.arange(1, tokens.shape[1] + 1, device=x.device, dtype=x.dtype)[:, None]
        running_mean = x.cumsum(dim=1) / counts
        return self.head(self.mlp(torch.cat([x, running_mean], dim=-1)))
