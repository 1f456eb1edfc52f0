"""A tiny image-file dataset, written at test time: what the lazy-loading tests train on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from margin_tune.trainables.config import Config, DatasetConfig
from margin_tune.trainables.data.files import ImageFiles, image_files
from margin_tune.trainables.parts import config_from_dict
from margin_tune.trainables.trial import EpochReport, Trial

CLASSES, PER_CLASS = 8, 5


def write_images(root: Path, classes: int = CLASSES, per_class: int = PER_CLASS) -> list[str]:
    """JPEGs of a few sizes and aspect ratios, one brightness per class so that they can be
    told apart; returns their relative paths."""
    rng = np.random.default_rng(0)
    files = []
    for label in range(classes):
        folder = root / f"c{label:02d}"
        folder.mkdir(parents=True)
        for number in range(per_class):
            height, width = (30 + 7 * number, 48 - 3 * number)
            base = np.full((height, width, 3), 20 + 25 * label, dtype=np.int16)
            pixels = np.clip(base + rng.integers(-15, 16, base.shape), 0, 255).astype(np.uint8)
            relative = f"c{label:02d}/{number}.jpg"
            Image.fromarray(pixels).save(root / relative, quality=90)
            files.append(relative)
    return files


def files_dataset(root: Path, config: DatasetConfig) -> ImageFiles:
    files = write_images(root)
    labels = [relative.split("/")[0] for relative in files]
    return image_files(config, root, files, labels, "test-files", test_classes=["c06", "c07"])


def trial_config(**dataset: object) -> Config:
    return config_from_dict(
        {
            "seed": 3,
            "dataset": {"image_size": 16, "val_fraction": 0.34, "split": "given", **dataset},
            "model": {"name": "cnn", "hidden_dims": [8, 8], "embedding_dim": 8},
            "sampler": {"classes_per_batch": 2, "samples_per_class": 2},
            # On the CPU wherever the tests run: "auto" would train on a GPU machine's CUDA,
            # where cuDNN's kernels are not bitwise repeatable; the CUDA tests ask for "cuda".
            "train": {"epochs": 3, "batches_per_epoch": 3, "num_threads": 1, "device": "cpu"},
            "margin": {"scheduler": "dams", "target_easy_ratio": 0.5, "initial_margin": 1.5},
        }
    )


def resumed_losses(config: Config, dataset: ImageFiles) -> list[float]:
    """The per-epoch training losses of a trial stopped after its first epoch, checkpointed,
    and resumed into a new :class:`Trial`: equal to a straight run's when resume is exact."""
    kept: dict[str, dict[str, Any]] = {}

    def stop_after_first(report: EpochReport) -> bool:
        kept["state"] = report.checkpoint()
        return True

    Trial(config, dataset).run(stop_after_first)
    resumed = Trial(config, dataset)
    resumed.load_state_dict(kept["state"])
    return [row["train_loss"] for row in resumed.run().history]
