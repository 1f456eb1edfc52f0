"""P12: images per second through a trial's training input, against torchvision's plain loader.

Both sides read the same photo-sized JPEGs (``bench.image_archive``, CUB's layout, whose
``images/`` folder is an ``ImageFolder``) with the same transforms at the literature's size
(random resized crop to 224 with scale 0.16-1 and ratio 3/4-4/3, horizontal flip, ImageNet
normalisation), the same number of ``DataLoader`` workers (one per core), the same batch size
and the same number of batches:

- margin-tune: the trial's own path, ``FileFeed.training`` over the P x K sampler's batches,
  each image augmented by a generator seeded from (seed, epoch, batch, position);
- plain: ``torchvision.datasets.ImageFolder`` with ``RandomResizedCrop``,
  ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize``, in a shuffled ``DataLoader``.

Each repeat builds both loaders afresh, runs one pass to start their persistent workers, and
times the second (the steady state a training epoch sees); the order alternates between
repeats so that neither side always runs on a warmer cache. Needs torchvision (``[vision]``).
Run: ``python -m bench --only P12``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.common import Figure
from bench.image_archive import IMAGE_SIZE, archive_dataset, write_photo_archive
from bench.tables import markdown_table
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import load_dataset
from margin_tune.trainables.data.feed import build_feed
from margin_tune.trainables.data.split import split_classes
from margin_tune.trainables.parts import config_from_dict
from margin_tune.trainables.samplers import EpochContext, build_sampler

TARGET = 0.95
CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 8, 4
BATCH = CLASSES_PER_BATCH * SAMPLES_PER_CLASS


def bench_config(root: Path, workers: int, batches: int) -> Config:
    return config_from_dict(
        {
            "seed": 0,
            "dataset": archive_dataset(root, augment=True, normalize="imagenet"),
            "sampler": {
                "name": "pk",
                "classes_per_batch": CLASSES_PER_BATCH,
                "samples_per_class": SAMPLES_PER_CLASS,
            },
            "train": {"num_workers": workers, "batches_per_epoch": batches, "device": "cpu"},
        }
    )


Loader = tuple[Callable[[int], int], Callable[[], None]]
"""A pass (epoch number -> images read) and how to stop the loader's workers."""


def ours(config: Config) -> Loader:
    """One pass of the trial's training input per call (epoch ``n``)."""
    dataset = load_dataset(config.dataset)
    split = split_classes(dataset.labels, config.dataset, dataset.given_test_classes)
    feed = build_feed(dataset, split, torch.device("cpu"), config)
    sampler = build_sampler(
        config.sampler, dataset.labels[split.train_indices], config.train.batches_per_epoch
    )

    def one_pass(epoch: int) -> int:
        context = EpochContext(
            epoch=epoch,
            rng=np.random.default_rng([config.seed, epoch]),
            embed=lambda positions: torch.empty(0),
            seed=config.seed,
        )
        return sum(len(inputs) for inputs, _ in feed.training(sampler.batches(context), 0, epoch))

    return one_pass, feed.close


def plain(root: Path, workers: int, batches: int) -> Loader:
    """The same pass through torchvision's ``ImageFolder`` and a shuffled ``DataLoader``."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(IMAGE_SIZE, scale=(0.16, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(root / "images"), transform=transform),
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )

    def one_pass(epoch: int) -> int:
        read = 0
        iterator: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(loader)
        for _ in range(batches):
            inputs, _labels = next(iterator)
            read += len(inputs)
        del iterator
        return read

    def close() -> None:
        nonlocal loader
        del loader

    return one_pass, close


def timed_second_pass(loader: Loader) -> float:
    """Images per second of the second pass (the first starts the workers)."""
    one_pass, close = loader
    one_pass(1)
    started = time.perf_counter()
    images = one_pass(2)
    rate = images / (time.perf_counter() - started)
    close()
    return rate


def measure(quick: bool) -> Figure:
    what = "images/s through a trial's training input vs torchvision ImageFolder + DataLoader"
    target = f"≥ {TARGET:g}× the plain loader"
    workers = os.cpu_count() or 1
    classes, per_class, batches, repeats = (20, 10, 4, 1) if quick else (40, 30, 30, 3)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-p12-") as scratch:
        root = write_photo_archive(Path(scratch) / "CUB_200_2011", classes, per_class)
        config = bench_config(root, workers, batches)
        for repeat in range(repeats):
            sides: list[tuple[str, Callable[[], Loader]]] = [
                ("margin-tune", lambda: ours(config)),
                ("plain", lambda: plain(root, workers, batches)),
            ]
            if repeat % 2:
                sides.reverse()
            rates = {name: timed_second_pass(build()) for name, build in sides}
            rows.append(
                {
                    "repeat": repeat + 1,
                    "margin-tune img/s": rates["margin-tune"],
                    "plain img/s": rates["plain"],
                    "ratio": rates["margin-tune"] / rates["plain"],
                }
            )
    table = pd.DataFrame(rows)
    ratio = statistics.median(table["ratio"])
    ours_rate = statistics.median(table["margin-tune img/s"])
    plain_rate = statistics.median(table["plain img/s"])
    return Figure(
        id="P12",
        what=what,
        target=target,
        value=(
            f"{ratio:.2f}× ({min(table['ratio']):.2f}–{max(table['ratio']):.2f}, n={repeats}): "
            f"{ours_rate:.0f} against {plain_rate:.0f} images/s, {workers} workers"
        ),
        met=ratio >= TARGET,
        details=(
            f"{classes} classes × {per_class} JPEGs of {PHOTO_SIZE}, batches of {BATCH} "
            f"({CLASSES_PER_BATCH} classes × {SAMPLES_PER_CLASS}), {batches} batches a pass, "
            f"{workers} workers on {os.cpu_count()} cores, {IMAGE_SIZE} px; the second pass of "
            "each loader timed.\n\n" + markdown_table(table)
        ),
    )


PHOTO_SIZE = "500×375 (CUB's common size)"

if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
