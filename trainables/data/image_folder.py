"""Images in one subfolder per class, the layout most labelled image collections come in."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import Dataset, encode_labels, require_path
from margin_tune.trainables.data.limits import check_dataset_bytes
from margin_tune.trainables.errors import ConfigError

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
"""File suffixes read as images (any case); other files, and hidden ones, are ignored."""

MAX_IMAGE_PIXELS = 50_000_000
"""Largest image read (width x height, from its header, before decoding): far above any photo a
metric-learning set needs, since every image is resized to ``dataset.image_size``, and below
PIL's own decompression-bomb bound (89 M pixels), whose warning would be a second stderr line."""

BYTES_PER_PIXEL = 3 + 3 + 3 * 8 + 3 * 4
"""Memory per pixel of every resized image while the dataset is built: the decoded RGB images,
their stack, the float64 scaling and the float32 features."""


def load_image_folder(config: DatasetConfig) -> Dataset:
    """Every image under ``dataset.path/<class>/``, resized to ``image_size`` x ``image_size``.

    Classes and files are read in sorted order, so the result is deterministic. Images are
    kept as one grayscale channel when every image is gray (R = G = B), else as RGB; values
    are scaled to [0, 1]. The first frame of an animated GIF is used, and EXIF rotation is
    applied so photos stand upright.

    Raises:
        ConfigError: unset or missing path, not a folder, no class subfolders, a class folder
            without images, more images than ``dataset.max_bytes`` holds at ``image_size``, an
            image larger than :data:`MAX_IMAGE_PIXELS`, an unreadable image, or fewer than two
            classes.
    """
    root = require_path(config)
    if not root.is_dir():
        raise ConfigError("dataset.path", f"{root} is not a folder of class subfolders")
    class_folders = sorted(child for child in root.iterdir() if _visible(child) and child.is_dir())
    if not class_folders:
        raise ConfigError("dataset.path", f"{root} has no class subfolders")
    images_of: dict[str, list[Path]] = {}
    for folder in class_folders:
        files = sorted(
            child
            for child in folder.iterdir()
            if _visible(child) and child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ConfigError(
                "dataset.path",
                f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})",
            )
        images_of[folder.name] = files
    count = sum(len(files) for files in images_of.values())
    size = config.image_size
    check_dataset_bytes(
        config,
        "dataset.path",
        f"{root}: {count:,} images at dataset.image_size {size}",
        count * size * size * BYTES_PER_PIXEL,
    )
    pixels: list[np.ndarray] = []
    names: list[str] = []
    for name, files in images_of.items():
        pixels.extend(_read_rgb(file, size) for file in files)
        names.extend([name] * len(files))
    images = np.stack(pixels)  # (N, S, S, 3) uint8
    if np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(
        images[..., 0], images[..., 2]
    ):
        images = images[..., :1]
    labels, class_names = encode_labels(np.array(names), root)
    return Dataset(
        features=(images.transpose(0, 3, 1, 2) / 255.0).astype(np.float32),
        labels=labels,
        class_names=class_names,
        name="image_folder",
    )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _read_rgb(file: Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8; any decoding failure is the user's to fix.

    The size its header declares is checked before any pixel is decoded.
    """
    try:
        with _open_image(file) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _too_large(file, f"is {width} x {height} = {width * height:,} pixels")
            upright = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(upright.resize((size, size), Image.Resampling.BILINEAR))
    except ConfigError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ConfigError("dataset.path", f"cannot read image {file}: {error}") from None


def _open_image(file: Path) -> Any:
    """``Image.open`` (lazy: it reads the header only), PIL's decompression-bomb error turned
    into ours and its warning, which :data:`MAX_IMAGE_PIXELS` makes redundant, silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(file)
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(
            file, f"has {int(found.group(1)):,} pixels" if found else "has too many pixels"
        ) from None


def _too_large(file: Path, size: str) -> ConfigError:
    return ConfigError(
        "dataset.path",
        f"image {file} {size}, above the limit of {MAX_IMAGE_PIXELS:,} pixels; shrink it "
        "(every image is resized to dataset.image_size anyway)",
    )
