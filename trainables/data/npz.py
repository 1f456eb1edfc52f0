"""Samples from a NumPy ``.npz`` archive holding ``X`` (samples) and ``y`` (labels).

The archive is read with ``allow_pickle=False``: it is user input, and unpickling runs code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from trainables.config import DatasetConfig
from trainables.data.dataset import Dataset, encode_labels, require_path
from trainables.errors import ConfigError

PIXEL_MAX = 255.0
"""``uint8`` arrays are taken as 8-bit pixels and scaled by this to [0, 1]."""

_NPY_MAGIC = b"\x93NUMPY"

_SHAPES = "(N, D) vectors, (N, H, W) grayscale or (N, C, H, W) images"


def load_npz(config: DatasetConfig) -> Dataset:
    """Read ``X`` and ``y`` from ``dataset.path``.

    ``X`` may be ``(N, D)``, ``(N, H, W)`` (given one channel) or ``(N, C, H, W)``, of any real
    dtype; ``uint8`` is scaled to [0, 1], anything else is only cast to float32. ``y`` holds
    integers or strings, renumbered ``0..C-1`` in sorted order; the originals become the class
    names.

    Raises:
        ConfigError: unset or missing path, not an ``.npz`` archive, a missing or pickled array,
            a shape, dtype or length mismatch, non-finite values or fewer than two classes.
    """
    path = require_path(config)
    samples, raw_labels = _read_arrays(path)
    if samples.ndim not in (2, 3, 4):
        raise ConfigError("dataset.path", f"X must hold {_SHAPES}, got shape {samples.shape}")
    if samples.dtype.kind not in "biuf":
        raise ConfigError("dataset.path", f"X must be numeric, got dtype {samples.dtype}")
    if raw_labels.ndim != 1 or raw_labels.dtype.kind not in "biuU":
        raise ConfigError(
            "dataset.path",
            f"y must be a 1-d array of integers or strings, got {raw_labels.dtype} of shape "
            f"{raw_labels.shape}",
        )
    if len(samples) != len(raw_labels):
        raise ConfigError(
            "dataset.path", f"X has {len(samples)} samples but y has {len(raw_labels)} labels"
        )
    features = samples.astype(np.float32)
    if samples.dtype == np.uint8:
        features /= PIXEL_MAX
    bad = int(np.count_nonzero(~np.isfinite(features)))
    if bad:
        raise ConfigError("dataset.path", f"X contains {bad} NaN/inf values")
    if features.ndim == 3:
        features = features[:, np.newaxis]
    labels, class_names = encode_labels(raw_labels, path)
    return Dataset(features=features, labels=labels, class_names=class_names, name="npz")


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` from the archive, every way of failing turned into a ConfigError."""
    _check_is_archive(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ConfigError("dataset.path", f"cannot read {path} as .npz: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConfigError(
            "dataset.path", f"{path} is a single .npy array; expected an .npz with X and y"
        )
    with archive:
        missing = [key for key in ("X", "y") if key not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "nothing"
            raise ConfigError(
                "dataset.path",
                f"{path} has no array {' or '.join(missing)} (found: {found}); expected X "
                "(samples) and y (labels)",
            )
        for key in ("X", "y"):
            if _holds_objects(archive, key):
                raise ConfigError(
                    "dataset.path",
                    f"cannot load X and y from {path}: {key} holds Python objects (dtype object), "
                    "which would have to be unpickled, and user files are never unpickled; store "
                    "X as numbers and y as integers or strings",
                )
        try:
            return archive["X"], archive["y"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ConfigError("dataset.path", f"cannot load X and y from {path}: {error}") from None


def _check_is_archive(path: Path) -> None:
    """Refuse anything but a zip before NumPy sees it.

    ``np.load`` takes a file that is neither a zip nor an ``.npy`` for a pickle and, with
    ``allow_pickle=False``, says so and suggests loading it unsafely: the wrong advice for a CSV
    or a folder given by mistake.
    """
    if zipfile.is_zipfile(path):
        return
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(_NPY_MAGIC))
    except OSError as error:
        raise ConfigError("dataset.path", f"cannot read {path} as .npz: {error}") from None
    if magic == _NPY_MAGIC:
        raise ConfigError(
            "dataset.path", f"{path} is a single .npy array; expected an .npz with X and y"
        )
    raise ConfigError(
        "dataset.path",
        f"cannot read {path} as .npz: not a NumPy .npz archive (a zip of .npy arrays); write "
        "one with numpy.savez(path, X=samples, y=labels)",
    )


def _holds_objects(archive: np.lib.npyio.NpzFile, key: str) -> bool:
    """Whether the member's header declares an object dtype, read without loading the data."""
    if archive.zip is None:
        return False
    try:
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = read_header(member)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False  # loading it will report what is wrong
    return bool(dtype.hasobject)
