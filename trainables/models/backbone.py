"""torchvision's image classifiers as embedding trunks: the literature's pretrained backbones.

The benchmarks' published numbers come from ImageNet-pretrained ResNets (and BN-Inception,
which neither torchvision nor timm maintain, so it is not offered), fine-tuned with a linear
embedding head on their pooled features. Any classifier ``torchvision.models.list_models``
names works the same way: its last linear layer (the ImageNet classifier) becomes the identity
and a linear head of ``model.embedding_dim`` follows.

torchvision is the ``[vision]`` extra; nothing here is imported without it. Weights are never
downloaded: ``pretrained`` reads the file torchvision would have downloaded from torch's cache
(``torch.hub.get_dir()/checkpoints``), and a missing file is an error saying which file to put
where; ``weights`` reads any local ``state_dict`` of the backbone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from margin_tune.trainables.config import ModelConfig
from margin_tune.trainables.errors import ConfigError, shorten
from margin_tune.trainables.models.size import check_parameter_count

VISION_INSTALL = (
    "pip install torch==2.14.1 torchvision==0.29.1 (a matching pair; PyPI's torchvision does not "
    "import beside the CPU torch 2.13.0 file), then pip install 'margin-tune[vision]'"
)


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class BackboneEmbedder(nn.Module):
    """A torchvision backbone without its classifier, then a linear embedding ``head``.

    With ``freeze_bn``, every BatchNorm layer stays in eval mode whatever :meth:`train` is told:
    its running statistics keep the loaded values (the literature's setting for small P x K
    batches, whose statistics would drift from ImageNet's); its scale and shift still train.
    """

    def __init__(self, backbone: nn.Module, features: int, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(features, config.embedding_dim)
        self.freeze_bn = config.freeze_bn
        self.train()

    def train(self, mode: bool = True) -> BackboneEmbedder:
        super().train(mode)
        if self.freeze_bn:
            for module in self.backbone.modules():
                if isinstance(module, BATCH_NORMS):
                    module.eval()
        return self

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.backbone(inputs)
        if not isinstance(features, torch.Tensor):  # Inception's (logits, aux) in training
            features = features[0]
        return self.head(torch.flatten(features, 1))


def torchvision_trunk(config: ModelConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """``model.backbone`` from torchvision with its weights, as a :class:`BackboneEmbedder`.

    Raises:
        ConfigError: torchvision missing (how to install it), samples that are not RGB images,
            an unknown backbone (listing some known ones), pretrained weights absent from the
            cache (which file to put where), an unreadable or mismatched weights file, or more
            parameters than ``model.max_parameters``.
    """
    try:
        import torchvision.models as vision_models
    except ImportError:
        raise ConfigError(
            "model.name", f"'torchvision' needs torchvision, the [vision] extra: {VISION_INSTALL}"
        ) from None
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ConfigError(
            "model.name",
            f"'torchvision' backbones take RGB images (3, H, W); the dataset gives {input_shape}",
        )
    known = vision_models.list_models(module=vision_models)
    if config.backbone not in known:
        raise ConfigError(
            "model.backbone",
            f"unknown torchvision classifier {config.backbone!r}; allowed: any of "
            f"torchvision.models.list_models(), e.g. {shorten(', '.join(known), 300)}",
        )
    network = vision_models.get_model(config.backbone, weights=None)
    if config.pretrained:
        network.load_state_dict(_cached_weights(vision_models, config.backbone))
    elif config.weights:
        _load_weights_file(network, Path(config.weights).expanduser())
    features = _drop_classifier(network, config.backbone)
    trunk = BackboneEmbedder(network, features, config)
    count = sum(parameter.numel() for parameter in trunk.parameters())
    check_parameter_count(config, input_shape, count)
    return trunk


def _cached_weights(vision_models: Any, backbone: str) -> dict[str, torch.Tensor]:
    """torchvision's default weights of ``backbone`` from torch's cache, never downloaded."""
    weights = vision_models.get_model_weights(backbone).DEFAULT
    filename = Path(urlparse(weights.url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.is_file():
        raise ConfigError(
            "model.pretrained",
            f"{backbone}'s weights {weights} are not in torch's cache: put {filename} (from "
            f"{weights.url}) at {cached} (or set TORCH_HOME), or give model.weights: PATH; "
            "margin-tune downloads nothing",
        )
    return _read_state(cached, "model.pretrained")


def _load_weights_file(network: nn.Module, path: Path) -> None:
    """A ``state_dict`` of the backbone (classifier included or not), or a checkpoint holding
    one under ``state_dict`` or ``model``; every other key must match."""
    state = _read_state(path, "model.weights")
    classifier = _last_linear_name(network)
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith(f"{classifier}.")]
    if missing or unexpected:
        raise ConfigError(
            "model.weights",
            f"{path} does not fit torchvision's network: missing {shorten(str(missing[:5]))}, "
            f"unexpected {shorten(str(unexpected[:5]))}",
        )


def _read_state(path: Path, field: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(field, f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds on a bad or unsafe file
        raise ConfigError(field, f"cannot read weights {path}: {shorten(str(error))}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(field, f"{path} holds no state_dict of tensors")
    return state


def _last_linear_name(network: nn.Module) -> str:
    linear = [name for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    return linear[-1] if linear else ""


def _drop_classifier(network: nn.Module, backbone: str) -> int:
    """Replace the last linear layer (the classifier) by the identity; its input width."""
    name = _last_linear_name(network)
    if not name:
        raise ConfigError(
            "model.backbone", f"{backbone!r} has no linear classifier to replace with a head"
        )
    parent_name, _, child = name.rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    layer = network.get_submodule(name)
    assert isinstance(layer, nn.Linear)
    setattr(parent, child, nn.Identity())  # a Sequential's children are named "0", "1", ...
    return int(layer.in_features)
