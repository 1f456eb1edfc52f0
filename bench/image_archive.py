"""A CUB-200-2011-shaped archive of photo-sized JPEGs, written for the image benchmarks.

The real archive cannot be downloaded here, and the loader's cost depends on what it decodes:
JPEGs of the benchmark's size (CUB's photos are about 500 x 375 and 20-60 KB) in its own layout,
``images.txt``, ``image_class_labels.txt``, ``classes.txt`` and ``images/<class>/<file>.jpg``.
The ``images/`` folder is also a torchvision ``ImageFolder``, so both loaders read the same files.
The pixels are smooth colour fields plus noise, which JPEG compresses to about the real size.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_SHAPE = (375, 500)
"""Height x width of every image: CUB's most common size."""

IMAGE_SIZE = 224
"""The literature's training crop (resize 256, crop 224)."""


def archive_dataset(root: Path, **extra: object) -> dict[str, object]:
    """The ``dataset`` config block that reads the archive at ``root`` with the literature's
    given class split and crop size; ``extra`` adds or replaces keys."""
    block: dict[str, object] = {
        "name": "cub",
        "path": str(root),
        "split": "given",
        "image_size": IMAGE_SIZE,
        "val_fraction": 0.2,
    }
    return {**block, **extra}


def _write_class(root: Path, class_id: int, name: str, per_class: int, seed: int) -> None:
    rng = np.random.default_rng([seed, class_id])
    height, width = PHOTO_SHAPE
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    columns = np.linspace(0.0, 1.0, width)[None, :, None]
    for number in range(1, per_class + 1):
        start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        field = start + (end - start) * (0.6 * rows + 0.4 * columns)
        pixels = np.clip(field + rng.normal(0.0, 12.0, (height, width, 3)), 0, 255)
        path = root / "images" / name / f"{name}_{number:04d}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, format="JPEG", quality=85)


def write_photo_archive(root: Path, classes: int, per_class: int, seed: int = 0) -> Path:
    """``root`` as a CUB archive of ``classes x per_class`` photo-sized JPEGs (written in
    parallel, one process per core); returns ``root``."""
    names = [f"{class_id:03d}.Class_{class_id}" for class_id in range(1, classes + 1)]
    for name in names:
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        jobs = [
            pool.submit(_write_class, root, class_id, name, per_class, seed)
            for class_id, name in enumerate(names, start=1)
        ]
        for job in jobs:
            job.result()
    images, labels = [], []
    for class_id, name in enumerate(names, start=1):
        for number in range(1, per_class + 1):
            images.append(f"{len(images) + 1} {name}/{name}_{number:04d}.jpg")
            labels.append(f"{len(labels) + 1} {class_id}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "classes.txt").write_text(
        "\n".join(f"{i} {name}" for i, name in enumerate(names, start=1)) + "\n"
    )
    return root
