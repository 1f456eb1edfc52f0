"""What every trial trains and evaluates on: samples with class labels, in memory or on disk."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.errors import ConfigError


class Samples(ABC):
    """Labelled samples, however they are stored: the contract the split, the trial, the model
    export and the tracking code rely on.

    ``labels`` is int64 ``(N,)`` with values ``0..len(class_names)-1``. :meth:`take` gives the
    samples as a network sees them at evaluation (for images: decoded, resized, cropped and
    normalised); a trial trains through :mod:`~margin_tune.trainables.data.feed`, which may
    augment. ``given_test_classes`` holds the class indices the source's own protocol tests on
    (the literature's split, ``dataset.split: given``), or None where it has none.
    """

    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str

    @property
    @abstractmethod
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape without the batch axis: ``(D,)`` or ``(C, H, W)``."""

    @abstractmethod
    def take(self, indices: np.ndarray) -> np.ndarray:
        """The samples at ``indices`` as float32 ``(n, *sample_shape)``, as evaluated."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A SHA-256 hex digest that changes when the data does."""

    @property
    def given_test_classes(self) -> np.ndarray | None:
        return None

    @property
    def kind(self) -> Literal["vector", "image"]:
        """``'vector'`` for ``(D,)`` samples, ``'image'`` for ``(C, H, W)``: it picks the model."""
        return "image" if len(self.sample_shape) == 3 else "vector"

    @property
    def num_classes(self) -> int:
        """How many classes the labels index."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Dataset(Samples):
    """Samples held in memory, integer labels and the names of their classes.

    Every source (generated, bundled or read from disk) ends here, so the rest of the pipeline
    handles one shape contract: ``features`` is float32, ``(N, D)`` for vectors or
    ``(N, C, H, W)`` for images; ``labels`` is int64 ``(N,)`` with values ``0..len(class_names)-1``.
    Equality is identity (comparing arrays element-wise has no single truth value); compare
    :meth:`fingerprint` instead.

    Attributes:
        features: The samples, float32.
        labels: Class index of each sample, int64.
        class_names: The original name of each class index, e.g. the character of a glyph.
        name: The source the samples came from, for logs and run tags.
    """

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if self.features.dtype != np.float32 or self.features.ndim not in (2, 4):
            raise ValueError(
                f"features must be float32 (N, D) or (N, C, H, W), got {self.features.dtype} "
                f"{self.features.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.shape != self.features.shape[:1]:
            raise ValueError(
                f"labels must be int64 of shape {self.features.shape[:1]}, got "
                f"{self.labels.dtype} {self.labels.shape}"
            )
        if self.labels.size and not 0 <= self.labels.min() <= self.labels.max() < self.num_classes:
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1}")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.features.shape[1:])

    def take(self, indices: np.ndarray) -> np.ndarray:
        return self.features[indices]

    def fingerprint(self) -> str:
        """SHA-256 of the feature and label bytes (with dtypes and shapes), computed once.

        Runs are tagged with it so that results on different data (another file, another
        generator version) are never compared by accident, whatever the config says.
        """
        return self._sha256

    @cached_property
    def _sha256(self) -> str:
        digest = hashlib.sha256()
        for array in (self.features, self.labels):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def require_path(config: DatasetConfig) -> Path:
    """``dataset.path`` of a file-backed source, which must be set and exist.

    Raises:
        ConfigError: the path is unset or names nothing on disk.
    """
    if not config.path:
        raise ConfigError("dataset.path", f"is required for dataset {config.name!r}")
    path = Path(config.path).expanduser()
    if not path.exists():
        raise ConfigError("dataset.path", f"{path} does not exist")
    return path


def encode_labels(raw: np.ndarray, source: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map any sortable labels to ``0..C-1`` in sorted order, keeping the originals as names.

    Raises:
        ConfigError: fewer than two classes, so no different-class pair can be formed.
    """
    values, labels = np.unique(raw, return_inverse=True)
    if len(values) < 2:
        raise ConfigError(
            "dataset.path",
            f"{source} holds {len(values)} class(es); need at least 2 to form different-class "
            "pairs",
        )
    return labels.reshape(-1).astype(np.int64), tuple(str(value) for value in values)
