"""Embedding network for feature vectors."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from margin_tune.trainables.config import ModelConfig
from margin_tune.trainables.models.size import check_parameter_count


class MLPEmbedder(nn.Module):
    """Flatten → [Linear → ReLU]* → Linear, the trunk shared by every branch of the Siamese net."""

    def __init__(self, config: ModelConfig, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        check_parameter_count(config, input_shape, self.parameter_count(config, input_shape))
        width = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, config.embedding_dim))
        self.trunk = nn.Sequential(*layers)

    @staticmethod
    def parameter_count(config: ModelConfig, input_shape: tuple[int, ...]) -> int:
        """Weights and biases of the network for samples of ``input_shape``, without building it."""
        widths = (math.prod(input_shape), *config.hidden_dims, config.embedding_dim)
        return sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(widths))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.trunk(inputs)
