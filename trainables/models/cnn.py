"""Embedding network for images."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from margin_tune.trainables.config import ModelConfig
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.models.size import check_parameter_count

KERNEL_SIZE = 3


class CNNEmbedder(nn.Module):
    """Conv blocks (conv → batch norm → ReLU → 2x2 pool), global average pool, linear head.

    ``model.hidden_dims`` gives the channels of the conv blocks, so one config field sizes both
    model kinds. Global pooling keeps the head independent of ``dataset.image_size``.
    """

    def __init__(self, config: ModelConfig, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                "model.name",
                f"'cnn' needs image samples (C, H, W), the dataset gives shape {input_shape}; "
                "use model.name=mlp for feature vectors",
            )
        side = min(input_shape[1:])
        if side >> len(config.hidden_dims) < 1:
            raise ConfigError(
                "model.hidden_dims",
                f"'cnn' halves the image once per block: {len(config.hidden_dims)} blocks need "
                f"images of at least {2 ** len(config.hidden_dims)} pixels a side, the dataset "
                f"gives {input_shape[1]} x {input_shape[2]}",
            )
        check_parameter_count(config, input_shape, self.parameter_count(config, input_shape))
        channels = input_shape[0]
        blocks: list[nn.Module] = []
        for width in config.hidden_dims:
            blocks += [
                nn.Conv2d(channels, width, kernel_size=KERNEL_SIZE, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, config.embedding_dim)

    @staticmethod
    def parameter_count(config: ModelConfig, input_shape: tuple[int, ...]) -> int:
        """Weights and biases for samples of ``input_shape`` ``(C, H, W)``, without building it:
        each block's convolution (no bias) and batch norm (scale and shift), then the head."""
        channels = (input_shape[0], *config.hidden_dims)
        blocks = sum(
            KERNEL_SIZE**2 * fan_in * fan_out + 2 * fan_out
            for fan_in, fan_out in itertools.pairwise(channels)
        )
        return blocks + channels[-1] * config.embedding_dim + config.embedding_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(inputs))
