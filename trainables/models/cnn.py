"""Embedding network for images."""

from __future__ import annotations

import torch
from torch import nn

from trainables.config import ModelConfig
from trainables.errors import ConfigError


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
        channels = input_shape[0]
        blocks: list[nn.Module] = []
        for width in config.hidden_dims:
            blocks += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, config.embedding_dim)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(inputs))
