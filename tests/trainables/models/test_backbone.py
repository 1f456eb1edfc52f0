"""torchvision backbones (the [vision] extra): ResNet-18 with random weights trained, evaluated,
checkpointed and resumed on image files; weights from a file and from torch's cache; frozen
BatchNorm. Skipped where torchvision is not installed, unless CI asks for it
(MARGIN_TUNE_REQUIRE_VISION=1 turns the skip into a failure)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from image_files_data import files_dataset, resumed_losses, trial_config

from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.trial import Trial

if os.environ.get("MARGIN_TUNE_REQUIRE_VISION") != "1":
    pytest.importorskip("torchvision")
import torchvision


def resnet_config(**model: object) -> Config:
    config = trial_config()
    fields = {"name": "torchvision", "backbone": "resnet18", "embedding_dim": 16, **model}
    return replace(
        config,
        model=replace(config.model, **fields),
        dataset=replace(config.dataset, image_size=32),
        margin=replace(config.margin, initial_margin=1.5),
        train=replace(config.train, epochs=2, batches_per_epoch=2),
    )


def test_resnet18_trains_evaluates_and_resumes_exactly(tmp_path: Path) -> None:
    config = resnet_config()
    dataset = files_dataset(tmp_path, config.dataset)
    trial = Trial(config, dataset)
    assert isinstance(trial.model.trunk.backbone, torchvision.models.ResNet)
    assert isinstance(trial.model.trunk.backbone.fc, torch.nn.Identity)
    assert trial.model.trunk.head.in_features == 512
    straight = trial.run(evaluate_test=True)
    assert straight.test_metrics is not None and 0 <= straight.test_metrics["map_at_r"] <= 1
    assert resumed_losses(config, dataset) == [row["train_loss"] for row in straight.history]


def test_weights_file_is_loaded_and_frozen_bn_keeps_its_statistics(tmp_path: Path) -> None:
    torch.manual_seed(7)
    source = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        source.bn1.running_mean.fill_(0.25)
    weights = tmp_path / "resnet18.pt"
    torch.save({"state_dict": source.state_dict()}, weights)
    config = resnet_config(weights=str(weights), freeze_bn=True)
    trial = Trial(config, files_dataset(tmp_path / "data", config.dataset))
    backbone = trial.model.trunk.backbone
    assert torch.equal(backbone.conv1.weight, source.conv1.weight)
    head = trial.model.trunk.head.weight.detach().clone()
    trial.run()
    assert torch.all(backbone.bn1.running_mean == 0.25)  # frozen: eval mode while training
    assert not torch.equal(trial.model.trunk.head.weight, head)  # the rest trained
    unfrozen = Trial(resnet_config(weights=str(weights)), trial.dataset)
    unfrozen.run()
    assert not torch.all(unfrozen.model.trunk.backbone.bn1.running_mean == 0.25)


def test_pretrained_is_read_from_torch_cache_never_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = resnet_config(pretrained=True)
    dataset = files_dataset(tmp_path / "data", config.dataset)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(ConfigError, match=r"model\.pretrained") as caught:
        Trial(config, dataset)
    assert "put resnet18-f37072fd.pth" in str(caught.value) and str(cached) in str(caught.value)
    cached.parent.mkdir(parents=True)
    source = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        source.conv1.weight.fill_(0.02)
    torch.save(source.state_dict(), cached)
    trial = Trial(config, dataset)
    assert torch.all(trial.model.trunk.backbone.conv1.weight == 0.02)


@pytest.mark.parametrize(
    ("model", "field", "text"),
    [
        ({"backbone": "resnet_nineteen"}, "model.backbone", "unknown torchvision classifier"),
        ({"weights": "/nowhere/w.pt"}, "model.weights", "does not exist"),
    ],
)
def test_bad_backbone_settings_name_their_field(
    tmp_path: Path, model: dict[str, object], field: str, text: str
) -> None:
    config = resnet_config(**model)
    with pytest.raises(ConfigError, match=text) as caught:
        Trial(config, files_dataset(tmp_path, config.dataset))
    assert caught.value.field == field


def test_any_listed_classifier_becomes_an_embedder() -> None:
    from margin_tune.trainables.models import build_model

    for backbone, width in (("mobilenet_v3_small", 1024), ("efficientnet_b0", 1280)):
        model = build_model(resnet_config(backbone=backbone).model, (3, 32, 32)).eval()
        assert model.trunk.head.in_features == width
        out = model(torch.zeros(2, 3, 32, 32))
        assert out.shape == (2, 16)
        assert torch.allclose(out.norm(dim=1), torch.ones(2))
