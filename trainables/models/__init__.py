"""Embedding networks: a registry of trunks, each wrapped as a unit-norm Siamese embedder."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from margin_tune.trainables.config import ModelConfig
from margin_tune.trainables.models.backbone import torchvision_trunk
from margin_tune.trainables.models.cnn import CNNEmbedder
from margin_tune.trainables.models.mlp import MLPEmbedder
from margin_tune.trainables.models.siamese import SiameseEmbedder
from margin_tune.trainables.registry import Registry

TrunkFactory = Callable[[ModelConfig, tuple[int, ...]], nn.Module]

MODELS: Registry[TrunkFactory] = Registry("model")
MODELS.register("mlp")(MLPEmbedder)
MODELS.register("cnn")(CNNEmbedder)
MODELS.register("torchvision")(torchvision_trunk)


def build_model(config: ModelConfig, input_shape: tuple[int, ...]) -> SiameseEmbedder:
    """The embedder for samples of ``input_shape`` (one sample, without the batch axis)."""
    return SiameseEmbedder(MODELS.get(config.name)(config, input_shape))


__all__ = ["MODELS", "SiameseEmbedder", "build_model"]
