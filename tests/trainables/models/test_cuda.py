"""What only a CUDA device runs: pinned, non-blocking copies of decoded batches, fp16 with its
gradient scaler across a checkpoint, bf16 + channels_last on a torchvision backbone with loader
workers, and the same network embedding alike on the GPU and the CPU. Marked ``gpu`` and
skipped without a device; run on a GPU machine with ``python -m pytest -m gpu``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from image_files_data import files_dataset, trial_config

from margin_tune.trainables.config import Config
from margin_tune.trainables.data.feed import build_feed
from margin_tune.trainables.data.split import split_classes
from margin_tune.trainables.trial import EpochReport, Trial, build_untrained_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def on_cuda(config: Config | None = None, **train: object) -> Config:
    config = config or trial_config()
    margin = replace(config.margin, initial_margin=1.5)
    fields: dict[str, Any] = {"device": "cuda", "num_workers": 2, **train}
    return replace(config, margin=margin, train=replace(config.train, **fields))


def test_file_batches_reach_the_gpu_equal_to_the_cpus(tmp_path: Path) -> None:
    """Pinned memory and non-blocking copies deliver the very pixels the CPU feed decodes."""
    config = on_cuda()
    dataset = files_dataset(tmp_path, config.dataset)
    split = split_classes(dataset.labels, config.dataset, dataset.given_test_classes)
    cuda = build_feed(dataset, split, torch.device("cuda"), config)
    cpu = build_feed(dataset, split, torch.device("cpu"), config)
    batches = [np.array([0, 1, 2, 3]), np.array([4, 5, 0, 1])]
    for (on_gpu, _), (on_cpu, _) in zip(
        cuda.training(batches, 3, 1), cpu.training(batches, 3, 1), strict=True
    ):
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=0)
    evaluated = torch.cat(list(cuda.evaluation("val")))
    torch.testing.assert_close(evaluated.cpu(), torch.cat(list(cpu.evaluation("val"))))
    cuda.close()
    cpu.close()


def test_fp16_scaler_state_survives_a_checkpoint(tmp_path: Path) -> None:
    config = on_cuda(precision="fp16", channels_last=True)
    dataset = files_dataset(tmp_path, config.dataset)
    kept: dict[str, dict[str, Any]] = {}

    def stop_after_first(report: EpochReport) -> bool:
        kept["state"] = report.checkpoint()
        return True

    first = Trial(config, dataset)
    first.run(stop_after_first)
    saved = kept["state"]["grad_scaler"]
    assert saved["scale"] > 0
    resumed = Trial(config, dataset)
    resumed.load_state_dict(kept["state"])
    assert resumed.state_dict()["grad_scaler"]["scale"] == saved["scale"]
    history = resumed.run().history
    assert len(history) == config.train.epochs
    assert all(np.isfinite(row["train_loss"]) for row in history)
    first.feed.close()
    resumed.feed.close()


def test_resnet18_bf16_channels_last_with_workers_trains_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    base = trial_config()
    config = on_cuda(
        replace(
            base,
            model=replace(base.model, name="torchvision", backbone="resnet18", embedding_dim=16),
            dataset=replace(base.dataset, image_size=32),
        ),
        precision="bf16",
        channels_last=True,
        epochs=2,
    )
    dataset = files_dataset(tmp_path, config.dataset)
    trial = Trial(config, dataset)
    conv = next(m for m in trial.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_cuda
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    kept: dict[str, dict[str, Any]] = {}

    def keep_first(report: EpochReport) -> bool:
        kept.setdefault("state", report.checkpoint())
        return False

    straight = trial.run(keep_first, evaluate_test=True)
    assert straight.test_metrics is not None
    assert 0.0 <= straight.test_metrics["map_at_r"] <= 1.0
    resumed = Trial(config, dataset)
    resumed.load_state_dict(kept["state"])
    again = resumed.run().history
    assert again[0] == straight.history[0]  # the checkpointed epoch comes back as it was
    assert len(again) == 2 and np.isfinite(again[1]["train_loss"])
    trial.feed.close()
    resumed.feed.close()


def test_the_same_network_embeds_alike_on_gpu_and_cpu(tmp_path: Path) -> None:
    """fp32 on both: the GPU's embeddings of one batch equal the CPU's to float tolerance
    (TF32 off, as torch has it by default for matrix products)."""
    config = trial_config()
    dataset = files_dataset(tmp_path, config.dataset)
    cpu_model = build_untrained_model(config, dataset.sample_shape).eval()
    gpu_model = build_untrained_model(config, dataset.sample_shape).cuda().eval()
    inputs = torch.rand(6, *dataset.sample_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = cpu_model(inputs)
        found = gpu_model(inputs.cuda()).cpu()
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-4)
