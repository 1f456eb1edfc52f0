"""Embedding network for feature vectors."""

from __future__ import annotations

import torch
from torch import nn

from trainables.config import ModelConfig


class MLPEmbedder(nn.Module):
    """Flatten → [Linear → ReLU]* → Linear, the trunk shared by every branch of the Siamese net."""

    def __init__(self, config: ModelConfig, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        width = 1
        for size in input_shape:
            width *= size
        layers: list[nn.Module] = [nn.Flatten()]
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, config.embedding_dim))
        self.trunk = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.trunk(inputs)
