"""Images in one subfolder per class, the layout most labelled image collections come in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from trainables.config import DatasetConfig
from trainables.data.dataset import Dataset, encode_labels, require_path
from trainables.errors import ConfigError

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
"""File suffixes read as images (any case); other files, and hidden ones, are ignored."""


def load_image_folder(config: DatasetConfig) -> Dataset:
    """Every image under ``dataset.path/<class>/``, resized to ``image_size`` x ``image_size``.

    Classes and files are read in sorted order, so the result is deterministic. Images are
    kept as one grayscale channel when every image is gray (R = G = B), else as RGB; values
    are scaled to [0, 1]. The first frame of an animated GIF is used, and EXIF rotation is
    applied so photos stand upright.

    Raises:
        ConfigError: unset or missing path, not a folder, no class subfolders, a class folder
            without images, an unreadable image, or fewer than two classes.
    """
    root = require_path(config)
    if not root.is_dir():
        raise ConfigError("dataset.path", f"{root} is not a folder of class subfolders")
    class_folders = sorted(child for child in root.iterdir() if _visible(child) and child.is_dir())
    if not class_folders:
        raise ConfigError("dataset.path", f"{root} has no class subfolders")
    pixels: list[np.ndarray] = []
    names: list[str] = []
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
        pixels.extend(_read_rgb(file, config.image_size) for file in files)
        names.extend([folder.name] * len(files))
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
    """One image as (size, size, 3) uint8; any decoding failure is the user's to fix."""
    try:
        with Image.open(file) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(upright.resize((size, size), Image.Resampling.BILINEAR))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ConfigError("dataset.path", f"cannot read image {file}: {error}") from None
