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


def split_classes(
    labels: np.ndarray, config: DatasetConfig, given_test: np.ndarray | None = None
) -> ClassSplit:
    """Split the classes present in ``labels`` into train, validation and test.

    ``dataset.split: seeded``: ``round(C * train_fraction)`` classes train,
    ``round(C * val_fraction)`` validate and the rest test, the classes being shuffled with
    ``np.random.default_rng(config.split_seed)``. ``given``: ``given_test`` (the source's own
    test classes) test, and ``round(T * val_fraction)`` of the T other classes, drawn with the
    same generator, validate: the literature's split, with validation carved from its training
    classes so that the test classes are never looked at before the final table.

    Raises:
        ConfigError: a part would get fewer than two classes; the message names the fraction
            to change and the numbers that led there. ``given`` without ``given_test``.
    """
    classes = np.unique(labels)
    if config.split == "given":
        return _given_split(labels, classes, config, given_test)
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
    return _split(labels, train, val, test)


def _given_split(
    labels: np.ndarray, classes: np.ndarray, config: DatasetConfig, given_test: np.ndarray | None
) -> ClassSplit:
    if given_test is None:
        raise ConfigError(
            "dataset.split", "'given' needs a source with its own test classes; allowed: seeded"
        )
    test = np.intersect1d(classes, given_test).astype(np.int64)
    rest = np.setdiff1d(classes, test)
    if len(test) < MIN_CLASSES_PER_SPLIT:
        raise ConfigError(
            "dataset.split",
            f"the source's own split has {len(test)} test class(es); need at least "
            f"{MIN_CLASSES_PER_SPLIT} (use dataset.split: seeded)",
        )
    n_val = round(len(rest) * config.val_fraction)
    _require_classes("dataset.val_fraction", len(rest), config.val_fraction, n_val, "validation")
    n_train = len(rest) - n_val
    if n_train < MIN_CLASSES_PER_SPLIT:
        raise ConfigError(
            "dataset.val_fraction",
            f"{len(rest)} given training classes leave {n_train} to train on after {n_val} "
            f"validation; need at least {MIN_CLASSES_PER_SPLIT} (lower dataset.val_fraction)",
        )
    order = np.random.default_rng(config.split_seed).permutation(rest)
    val, train = (np.sort(part).astype(np.int64) for part in np.split(order, [n_val]))
    return _split(labels, train, val, test)


def _split(labels: np.ndarray, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> ClassSplit:
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
