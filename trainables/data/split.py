"""Class-disjoint train/validation/test split.

Metric learning is judged on classes the network never saw, so the split is over classes, not
samples. It depends only on the labels and ``dataset.split_seed`` (not on the training seed), so
trials with different training seeds are scored on the same test classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.errors import ConfigError

MIN_CLASSES_PER_SPLIT = 2
"""Verification pairs need a different-class pair in every split, so two classes at least."""


@dataclass(frozen=True, eq=False)
class ClassSplit:
    """Which classes, and which sample indices, belong to each part; all sorted int64 arrays."""

    train_classes: np.ndarray
    val_classes: np.ndarray
    test_classes: np.ndarray
    train_indices: np.ndarray
    val_indices: np.ndarray
    test_indices: np.ndarray


def split_classes(labels: np.ndarray, config: DatasetConfig) -> ClassSplit:
    """Split the classes present in ``labels`` at random into train, validation and test.

    ``round(C * train_fraction)`` classes train, ``round(C * val_fraction)`` validate and the
    rest test, the classes being shuffled with ``np.random.default_rng(config.split_seed)``.

    Raises:
        ConfigError: a part would get fewer than two classes; the message names the fraction
            to change and the numbers that led there.
    """
    classes = np.unique(labels)
    count = len(classes)
    n_train = round(count * config.train_fraction)
    n_val = round(count * config.val_fraction)
    n_test = count - n_train - n_val
    _require_classes("dataset.train_fraction", count, config.train_fraction, n_train, "training")
    _require_classes("dataset.val_fraction", count, config.val_fraction, n_val, "validation")
    if n_test < MIN_CLASSES_PER_SPLIT:
        raise ConfigError(
            "dataset.train_fraction",
            f"{count} classes leave {n_test} test class(es) after {n_train} training and {n_val} "
            f"validation; need at least {MIN_CLASSES_PER_SPLIT} (lower dataset.train_fraction or "
            "dataset.val_fraction, or use more classes)",
        )
    order = np.random.default_rng(config.split_seed).permutation(classes)
    parts = np.split(order, [n_train, n_train + n_val])
    train, val, test = (np.sort(part).astype(np.int64) for part in parts)
    return ClassSplit(
        train_classes=train,
        val_classes=val,
        test_classes=test,
        train_indices=_indices_of(labels, train),
        val_indices=_indices_of(labels, val),
        test_indices=_indices_of(labels, test),
    )


def _require_classes(field_name: str, count: int, fraction: float, size: int, part: str) -> None:
    if size < MIN_CLASSES_PER_SPLIT:
        raise ConfigError(
            field_name,
            f"{count} classes x {fraction} leaves {size} {part} class(es); need at least "
            f"{MIN_CLASSES_PER_SPLIT} (raise {field_name} or use more classes)",
        )


def _indices_of(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(labels, classes)).astype(np.int64)
