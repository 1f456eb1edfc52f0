"""How an image file becomes a network's input: the literature's training and evaluation views.

Training: a random resized crop (a share of the image's area drawn from ``dataset.crop_scale``,
an aspect ratio from 3/4 to 4/3 drawn on a log scale, ten tries before a centre crop of the
closest allowed shape) resized to ``image_size``, and a horizontal flip half the time.
Evaluation: the shorter side resized to ``resize``, then a centre crop of ``image_size``. Both
end in float32 ``(3, H, W)`` scaled to [0, 1] and, with ``normalize: imagenet``, standardised
by ImageNet's channel statistics.

The same steps as torchvision's ``RandomResizedCrop`` / ``Resize`` + ``CenterCrop``, written on
PIL so that the embedded default and every image source work without torchvision, and so that
every random draw comes from a generator the caller seeds per sample: a batch is the same
whichever worker decodes it, and a resumed trial sees the augmentations it would have seen.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from margin_tune.trainables.config import DatasetConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The channel statistics torchvision's ImageNet weights were trained with."""

RESIZE_RATIO = 8 / 7
"""Default evaluation resize over crop: the literature's 256 -> 224."""

ASPECT_RATIOS = (3 / 4, 4 / 3)
CROP_TRIES = 10

MAX_IMAGE_PIXELS = 50_000_000
"""Largest image decoded (width x height, read from its header first): far above any photo of
the benchmarks and below PIL's own decompression-bomb bound (89 M pixels)."""


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message starts with its path.

    Built from one string so that a ``DataLoader`` worker can send it to the trial's process
    intact (torch rebuilds a worker's exception from its message).
    """


@dataclass(frozen=True)
class ImageView:
    """The preprocessing of one dataset's images, from its config."""

    image_size: int
    resize: int
    augment: bool
    crop_scale: tuple[float, float]
    normalize: bool

    @classmethod
    def from_config(cls, config: DatasetConfig) -> ImageView:
        return cls(
            image_size=config.image_size,
            resize=config.resize or round(config.image_size * RESIZE_RATIO),
            augment=config.augment,
            crop_scale=config.crop_scale,
            normalize=config.normalize == "imagenet",
        )

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def describe(self) -> dict[str, Any]:
        """What a saved model records so that its inputs can be prepared the same way."""
        return {
            "kind": "image",
            "channels": 3,
            "resize_shorter": self.resize,
            "center_crop": [self.image_size, self.image_size],
            "scale": "divide by 255",
            "mean": list(IMAGENET_MEAN) if self.normalize else [0.0, 0.0, 0.0],
            "std": list(IMAGENET_STD) if self.normalize else [1.0, 1.0, 1.0],
        }

    def evaluation(self, file: Path) -> np.ndarray:
        """``file`` as evaluated: resize the shorter side, centre crop, scale, normalise."""
        image = read_rgb(file)
        width, height = image.size
        scale = self.resize / min(width, height)
        size = (
            max(self.image_size, round(width * scale)),
            max(self.image_size, round(height * scale)),
        )
        image = image.resize(size, Image.Resampling.BILINEAR)
        left = (size[0] - self.image_size) // 2
        top = (size[1] - self.image_size) // 2
        box = (left, top, left + self.image_size, top + self.image_size)
        return self._array(image.crop(box))

    def training(self, file: Path, rng: np.random.Generator) -> np.ndarray:
        """``file`` as trained on: the evaluation view when ``augment`` is off, else a random
        resized crop and a random horizontal flip drawn from ``rng``."""
        if not self.augment:
            return self.evaluation(file)
        image = read_rgb(file)
        left, top, width, height = crop_box(image.size, self.crop_scale, rng)
        image = image.resize(
            (self.image_size, self.image_size),
            Image.Resampling.BILINEAR,
            box=(left, top, left + width, top + height),
        )
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._array(image)

    def _array(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        if self.normalize:
            mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
            std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
            pixels = (pixels - mean) / std
        return np.ascontiguousarray(pixels, dtype=np.float32)


def crop_box(
    size: tuple[int, int], scale: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A random crop ``(left, top, width, height)`` of an image of ``size`` (width, height).

    Area share from ``scale``, aspect ratio log-uniform in 3/4..4/3, up to ten tries for a box
    that fits; then the centre crop whose ratio is the nearest allowed one.
    """
    width, height = size
    area = width * height
    log_low, log_high = (math.log(ratio) for ratio in ASPECT_RATIOS)
    for _ in range(CROP_TRIES):
        target = area * rng.uniform(scale[0], scale[1])
        ratio = math.exp(rng.uniform(log_low, log_high))
        crop_width = round(math.sqrt(target * ratio))
        crop_height = round(math.sqrt(target / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return left, top, crop_width, crop_height
    ratio = width / height
    if ratio < ASPECT_RATIOS[0]:
        crop_width, crop_height = width, round(width / ASPECT_RATIOS[0])
    elif ratio > ASPECT_RATIOS[1]:
        crop_width, crop_height = round(height * ASPECT_RATIOS[1]), height
    else:
        crop_width, crop_height = width, height
    return (width - crop_width) // 2, (height - crop_height) // 2, crop_width, crop_height


def read_rgb(file: Path) -> Image.Image:
    """``file`` decoded as an upright RGB image (EXIF rotation applied, a GIF's first frame).

    Raises:
        UnreadableImageError: missing, not an image, truncated or corrupt, or larger than
            :data:`MAX_IMAGE_PIXELS`; the message starts with the path.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UnreadableImageError(
                        f"{file}: {width} x {height} = {width * height:,} pixels, above the limit "
                        f"of {MAX_IMAGE_PIXELS:,}; shrink it"
                    )
                upright = ImageOps.exif_transpose(image).convert("RGB")
                upright.load()
                return upright
    except UnreadableImageError:
        raise
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise UnreadableImageError(f"{file}: {count}; shrink it") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise UnreadableImageError(f"{file}: cannot decode the image ({error})") from None
