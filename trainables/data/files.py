"""Image datasets read lazily from disk: paths and labels in memory, pixels decoded per batch.

A benchmark at the literature's 224 px does not fit in memory as float32 (CUB-200-2011 about
7 GB, Stanford Online Products about 70 GB), nor should it travel through Ray's object store.
:class:`ImageFiles` holds what a trial needs to find each image, a few MB for SOP's 120k files;
:mod:`~margin_tune.trainables.data.feed` decodes them in ``DataLoader`` workers.

Every reader of a native layout (:mod:`~margin_tune.trainables.data.layouts`) ends in
:func:`image_files`, which checks that each listed file exists and is not truncated before any
training starts, so a broken archive is reported by path in seconds, not an hour into a sweep.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import Samples, encode_labels
from margin_tune.trainables.data.transforms import ImageView
from margin_tune.trainables.errors import ConfigError

JPEG_SUFFIXES = (".jpg", ".jpeg")
JPEG_END = b"\xff\xd9"
PNG_END = b"IEND\xaeB`\x82"
TRAILER_SLACK = 64
"""Bytes at a file's end searched for the format's end marker: some cameras and tools pad a
JPEG after its end-of-image marker."""


@dataclass(frozen=True)
class ProtocolPairs:
    """A verification protocol's fixed pairs (LFW's ``pairs.txt``): indices into the files,
    whether each pair is one identity, and the fold each pair belongs to."""

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    fold: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.first)
        if not all(len(array) == count for array in (self.second, self.same, self.fold)):
            raise ValueError("pair arrays must have one entry per pair")


@dataclass(frozen=True, eq=False)
class ImageFiles(Samples):
    """Image files under ``root`` with a class each, decoded when a batch needs them.

    Attributes:
        root: The unpacked archive (``dataset.path``).
        files: Each image's path relative to ``root``, POSIX separators, in the source's order.
        labels: Class index of each file, int64, ``0..len(class_names)-1``.
        class_names: The source's name of each class index.
        name: The source (``cub``, ``cars``, ``sop``, ``lfw``), for logs and run tags.
        view: How a file becomes a network input (from ``dataset.*``).
        test_classes: The class indices the source's own protocol tests on, or None.
        pairs: A verification protocol's fixed pairs, or None.
    """

    root: Path
    files: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    view: ImageView
    test_classes: np.ndarray | None = None
    pairs: ProtocolPairs | None = None

    def __post_init__(self) -> None:
        if self.labels.dtype != np.int64 or self.labels.shape != (len(self.files),):
            raise ValueError(f"labels must be int64 of shape ({len(self.files)},)")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.view.sample_shape

    @property
    def given_test_classes(self) -> np.ndarray | None:
        return self.test_classes

    def path(self, index: int) -> Path:
        return self.root / self.files[index]

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The evaluation view of the files at ``indices``, decoded here, in this process."""
        shape = (len(indices), *self.sample_shape)
        out = np.empty(shape, dtype=np.float32)
        for row, index in enumerate(np.asarray(indices).tolist()):
            out[row] = self.view.evaluation(self.path(index))
        return out

    def fingerprint(self) -> str:
        """SHA-256 of every file's relative path, byte size and label, in order.

        Reading 1-3 GB of pixels to tag a run would cost a minute per sweep; the listing and the
        sizes change when files are added, dropped, relabelled or re-encoded.
        """
        return self._sha256

    @cached_property
    def _sha256(self) -> str:
        digest = hashlib.sha256(self.name.encode())
        for relative, label in zip(self.files, self.labels.tolist(), strict=True):
            size = os.stat(self.root / relative).st_size
            digest.update(f"{relative}\0{size}\0{label}\n".encode())
        return digest.hexdigest()


def image_files(
    config: DatasetConfig,
    root: Path,
    files: Sequence[str],
    raw_labels: Sequence[object],
    name: str,
    *,
    test_classes: Collection[object] | None = None,
    pairs: ProtocolPairs | None = None,
    listed_in: str = "dataset.path",
) -> ImageFiles:
    """An :class:`ImageFiles` from a reader's listing, every file checked on disk first.

    Args:
        config: The ``dataset`` section (the view, and ``split``).
        root: The archive; ``files`` are relative to it.
        files: Relative paths, POSIX separators.
        raw_labels: The source's class of each file (any sortable value); class indices follow
            their sorted order.
        name: The source's registry name.
        test_classes: The raw labels the source's protocol tests on; required for
            ``dataset.split: given``.
        pairs: A verification protocol's pairs, indices into ``files``.
        listed_in: The file that lists the images, for messages.

    Raises:
        ConfigError: no files, a file missing or empty, a JPEG or PNG without its end marker
            (truncated), fewer than two classes, or ``split: given`` on a source without one.
    """
    if not files:
        raise ConfigError("dataset.path", f"{listed_in} lists no images")
    for relative in files:
        _check_image_file(root / relative, listed_in)
    labels, class_names = encode_labels(np.asarray(raw_labels), root)
    given = None
    if test_classes is not None:
        index_of = {value: index for index, value in enumerate(class_names)}
        given = np.array(sorted(index_of[str(value)] for value in test_classes), dtype=np.int64)
    if config.split == "given" and given is None:
        raise ConfigError(
            "dataset.split",
            f"'given' needs a source with its own train/test classes; {name} has none "
            "(allowed here: seeded)",
        )
    return ImageFiles(
        root=root,
        files=tuple(files),
        labels=labels,
        class_names=class_names,
        name=name,
        view=ImageView.from_config(config),
        test_classes=given,
        pairs=pairs,
    )


def _check_image_file(path: Path, listed_in: str) -> None:
    """Exists, is not empty and, for JPEG and PNG, ends with its format's end marker."""
    try:
        size = path.stat().st_size
    except OSError:
        raise ConfigError(
            "dataset.path", f"{path} (listed in {listed_in}) does not exist"
        ) from None
    if size == 0:
        raise ConfigError("dataset.path", f"image {path} is empty")
    suffix = path.suffix.lower()
    marker = JPEG_END if suffix in JPEG_SUFFIXES else PNG_END if suffix == ".png" else None
    if marker is None:
        return
    with path.open("rb") as handle:
        handle.seek(max(0, size - TRAILER_SLACK))
        tail = handle.read()
    if marker not in tail:
        raise ConfigError(
            "dataset.path",
            f"image {path} is truncated: no {suffix.lstrip('.').upper()} end marker; "
            "re-extract it from the archive",
        )
