"""Samples from a NumPy ``.npz`` archive holding ``X`` (samples) and ``y`` (labels).

The archive is read with ``allow_pickle=False``: it is user input, and unpickling runs code. The
arrays' headers are read first, so that an object dtype or a size beyond ``dataset.max_bytes``
(a forged header can claim any shape) is refused before any data is read.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import Dataset, encode_labels, require_path
from margin_tune.trainables.data.limits import check_dataset_bytes
from margin_tune.trainables.errors import ConfigError, shorten

PIXEL_MAX = 255.0
"""``uint8`` arrays are taken as 8-bit pixels and scaled by this to [0, 1]."""

_NPY_MAGIC = b"\x93NUMPY"

_SHAPES = "(N, D) vectors, (N, H, W) grayscale or (N, C, H, W) images"

_WORK_BYTES_PER_VALUE = 4 + 2
"""Memory loading takes per value of ``X`` besides the array itself: its float32 copy and the two
boolean masks of the NaN/inf check."""


def load_npz(config: DatasetConfig) -> Dataset:
    """Read ``X`` and ``y`` from ``dataset.path``.

    ``X`` may be ``(N, D)``, ``(N, H, W)`` (given one channel) or ``(N, C, H, W)``, of any real
    dtype; ``uint8`` is scaled to [0, 1], anything else is only cast to float32. ``y`` holds
    integers or strings, renumbered ``0..C-1`` in sorted order; the originals become the class
    names.

    Raises:
        ConfigError: unset or missing path, not an ``.npz`` archive, a missing or pickled array,
            arrays whose headers declare more than ``dataset.max_bytes`` (or this machine's
            memory), a shape, dtype or length mismatch, non-finite values or fewer than two
            classes.
    """
    path = require_path(config)
    samples, raw_labels = _read_arrays(path, config)
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


def _read_arrays(path: Path, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
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
        headers = {key: _member_header(archive, key) for key in ("X", "y")}
        for key, header in headers.items():
            if header is not None and header[1].hasobject:
                raise ConfigError(
                    "dataset.path",
                    f"cannot load X and y from {path}: {key} holds Python objects (dtype object), "
                    "which would have to be unpickled, and user files are never unpickled; store "
                    "X as numbers and y as integers or strings",
                )
        _check_declared_size(path, config, headers)
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


_Header = tuple[tuple[int, ...], np.dtype]


def _member_header(archive: np.lib.npyio.NpzFile, key: str) -> _Header | None:
    """The shape and dtype the member's header declares, read without loading the data; None
    where the header cannot be read (loading the member then reports what is wrong)."""
    if archive.zip is None:
        return None
    try:
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return tuple(int(size) for size in shape), dtype


def _check_declared_size(
    path: Path, config: DatasetConfig, headers: dict[str, _Header | None]
) -> None:
    """Refuse arrays whose declared shapes need more memory than the dataset may take."""
    x_header, y_header = headers["X"], headers["y"]
    if x_header is None or y_header is None:
        return
    (x_shape, x_dtype), (y_shape, y_dtype) = x_header, y_header
    values = math.prod(x_shape)
    needed = (
        values * (x_dtype.itemsize + _WORK_BYTES_PER_VALUE) + math.prod(y_shape) * y_dtype.itemsize
    )
    check_dataset_bytes(
        config,
        "dataset.path",
        f"{path}: X of shape {shorten(str(x_shape))} ({x_dtype}) and y of shape "
        f"{shorten(str(y_shape))}",
        needed,
    )
