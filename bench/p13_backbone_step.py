"""P13: a torchvision backbone's training step at 224 px on the CPU, and the parts P14 uses.

Step: :meth:`Trial.train_step` (forward in the configured precision and memory format, the
triplet loss at the trial's margin, backward and the optimiser step) on one batch of random
224 px images already on the device, P x K labels; the median of ``STEPS`` timed steps after
``WARMUP`` untimed ones, each ended by a device synchronisation. On the CPU (this figure):
ResNet-18 in fp32, the literature's reference batch of 32 (8 classes x 4). On CUDA (P14) also
ResNet-50, each in fp32, bf16 and bf16 + channels_last at a batch of 128 (32 x 4).

Epoch (CUDA only, P14's second table): a real trial, ``Trial.run`` for two epochs, on a
CUB-200-2011-sized archive of photo-sized JPEGs in CUB's layout (``bench.image_archive``; 200
classes x 59 images, the given 100/100 split, validation carved from the training classes), with
its DataLoader workers. The second epoch is reported (the first starts the workers and tunes
cuDNN), and the test classes' embedding is timed after it: the README's expected time per trial
comes from these. Random weights: a pretrained network costs the same per step.
Run: ``python -m bench --only P13``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.common import Figure
from bench.image_archive import IMAGE_SIZE, archive_dataset, write_photo_archive
from bench.tables import markdown_table
from margin_tune.trainables import metric_names as names
from margin_tune.trainables.config import Config
from margin_tune.trainables.parts import config_from_dict
from margin_tune.trainables.trial import Trial

WARMUP, STEPS = 3, 10
CUB_CLASSES, CUB_PER_CLASS = 200, 59
"""CUB-200-2011 has 11,788 images of 200 species, about 59 a species."""

TINY_CLASSES, TINY_PER_CLASS = 84, 4
"""The archive a step-only trial is built on: 34 training classes under the given split, enough
for 32 a batch (its images are never read by a timed step)."""


def trial_config(
    root: Path,
    device: str,
    backbone: str,
    precision: str,
    channels_last: bool,
    per_batch: int,
    batches: int = 1,
) -> Config:
    workers = max(1, (os.cpu_count() or 2) - 2)
    return config_from_dict(
        {
            "seed": 0,
            "dataset": archive_dataset(root),
            "model": {"name": "torchvision", "backbone": backbone, "embedding_dim": 128},
            "sampler": {"name": "pk", "classes_per_batch": per_batch, "samples_per_class": 4},
            "margin": {"scheduler": "dams", "initial_margin": 0.2},
            "train": {
                "device": device,
                "precision": precision,
                "channels_last": channels_last,
                "num_workers": workers,
                "eval_batch_size": 256,
                "epochs": 2,
                "batches_per_epoch": batches,
                "lr": 1e-4,
            },
        }
    )


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(config: Config) -> float:
    """Median seconds of one :meth:`Trial.train_step` on a random batch on the device."""
    trial = Trial(config)
    per_class = config.sampler.samples_per_class
    batch = config.sampler.classes_per_batch * per_class
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator).to(trial.device)
    labels = torch.arange(config.sampler.classes_per_batch).repeat_interleave(per_class)
    labels = labels.to(trial.device)
    times = []
    for step in range(WARMUP + STEPS):
        synchronise(trial.device)
        started = time.perf_counter()
        trial.train_step(inputs, labels, margin=0.2)
        synchronise(trial.device)
        if step >= WARMUP:
            times.append(time.perf_counter() - started)
    trial.feed.close()
    return statistics.median(times)


def step_rows(root: Path, device: str) -> list[dict[str, Any]]:
    if device == "cpu":
        settings = [("resnet18", "fp32", False, 8)]
    else:
        settings = [
            (backbone, precision, channels_last, 32)
            for backbone in ("resnet18", "resnet50")
            for precision, channels_last in (("fp32", False), ("bf16", False), ("bf16", True))
        ]
    rows = []
    for backbone, precision, channels_last, per_batch in settings:
        config = trial_config(root, device, backbone, precision, channels_last, per_batch)
        seconds = step_seconds(config)
        batch = per_batch * 4
        rows.append(
            {
                "backbone": backbone,
                "precision": precision,
                "channels_last": channels_last,
                "batch": batch,
                "step ms": seconds * 1000,
                "images/s": batch / seconds,
            }
        )
    return rows


def epoch_rows(
    root: Path,
    device: str = "cuda",
    backbones: tuple[str, ...] = ("resnet18", "resnet50"),
    per_batch: int = 32,
) -> list[dict[str, Any]]:
    """A real two-epoch trial per backbone on the CUB-sized archive, bf16 + channels_last."""
    rows = []
    for backbone in backbones:
        config = trial_config(root, device, backbone, "bf16", True, per_batch)
        trial = Trial(config)
        train_images = len(trial.split.train_indices)
        batch = config.sampler.classes_per_batch * config.sampler.samples_per_class
        batches = train_images // batch
        config = trial_config(root, device, backbone, "bf16", True, per_batch, batches)
        trial = Trial(config)
        history = trial.run().history
        started = time.perf_counter()
        trial.evaluate_test()
        test_seconds = time.perf_counter() - started
        trial.feed.close()
        rows.append(
            {
                "backbone": backbone,
                "workers": config.train.num_workers,
                "train images": batches * batch,
                "val images": len(trial.split.val_indices),
                "test images": len(trial.split.test_indices),
                "epoch 1 s": history[0][names.EPOCH_SECONDS],
                "epoch 2 s": history[1][names.EPOCH_SECONDS],
                "test embedding + metrics s": test_seconds,
                "epoch images/s": (batches * batch + len(trial.split.val_indices))
                / history[1][names.EPOCH_SECONDS],
            }
        )
    return rows


def measure(quick: bool) -> Figure:
    """The CPU reference: ResNet-18, fp32, a batch of 32, on this machine's cores."""
    with tempfile.TemporaryDirectory(prefix="bench-p13-") as scratch:
        tiny = write_photo_archive(Path(scratch) / "tiny", TINY_CLASSES, TINY_PER_CLASS)
        steps = pd.DataFrame(step_rows(tiny, "cpu"))
    first = steps.iloc[0]
    return Figure(
        id="P13",
        what="one training step of a torchvision ResNet-18 at 224 px on the CPU",
        target="report",
        value=(
            f"{first['step ms'] / 1000:.2f} s a step of {first['batch']} images "
            f"({first['images/s']:.1f} images/s, {os.cpu_count()} cores)"
        ),
        met=None,
        details=(
            f"Median of {STEPS} steps after {WARMUP} warm-up steps, all {os.cpu_count()} cores "
            "as torch threads:\n\n" + markdown_table(steps)
        ),
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
