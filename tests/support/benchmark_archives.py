"""Tiny but trainable archives of the four benchmarks, written in their native layouts.

Each writer lays out a folder as the real archive unpacks (the index files with their real
headers and separators, ``cars_annos.mat`` in the real struct layout, written by SciPy) and
returns the path a user would give as ``dataset.path``. The images are small JPEGs: one mean
colour per class plus seeded noise, so the classes are separable and a small CNN learns them.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

IMAGE_SHAPE = (32, 40)
"""Height x width of every image (not square: the evaluation view's resize and crop matter)."""

NOISE = 64.0
"""Standard deviation of the per-pixel noise, in 0..255 units: it hides no class (averaged
over a crop's pixels it is a few units, the class colours are tens apart) yet keeps an untrained
network's embeddings from being perfect."""

CUB_FOLDER = "CUB_200_2011"
SOP_FOLDER = "Stanford_Online_Products"
SOP_HEADER = "image_id class_id super_class_id path"
LFW_FOLDER = "lfw"
CARS_FIELDS = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")


def class_colours(count: int) -> np.ndarray:
    """``count`` distinct RGB mean colours, (count, 3) float in 0..255: hues evenly spaced
    round the colour wheel, alternate classes darker, so every two classes differ by far more
    than the noise whatever the seed."""
    colours = [
        colorsys.hsv_to_rgb(index / count, 0.5, 0.8 if index % 2 == 0 else 0.55)
        for index in range(count)
    ]
    return np.asarray(colours, dtype=np.float64) * 255.0


def write_jpeg(path: Path, colour: np.ndarray, rng: np.random.Generator) -> None:
    """A ``IMAGE_SHAPE`` JPEG of ``colour`` plus Gaussian noise, folders made as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = rng.normal(0.0, NOISE, (*IMAGE_SHAPE, 3))
    pixels = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def write_lines(path: Path, lines: Sequence[str], ending: str = "\n") -> None:
    """``lines``, each followed by ``ending``, as the archives' index files are written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + ending for line in lines).encode())


def write_cub(parent: Path, classes: int = 8, per_class: int = 4, seed: int = 0) -> Path:
    """``parent/CUB_200_2011``: ``images.txt``, ``image_class_labels.txt``, ``classes.txt``
    and ``images/NNN.Name/Name_NNNN_M.jpg``; returns the archive folder.

    Image ids run over the classes in id order, as the real archive's do.
    """
    rng = np.random.default_rng(seed)
    colours = class_colours(classes)
    root = parent / CUB_FOLDER
    names = [f"{class_id:03d}.Bird_{class_id}" for class_id in range(1, classes + 1)]
    images: list[str] = []
    labels: list[str] = []
    for class_id, name in enumerate(names, start=1):
        bird = name.split(".", 1)[1]
        for number in range(1, per_class + 1):
            relative = f"{name}/{bird}_{class_id:04d}_{number}.jpg"
            write_jpeg(root / "images" / relative, colours[class_id - 1], rng)
            images.append(f"{len(images) + 1} {relative}")
            labels.append(f"{len(labels) + 1} {class_id}")
    write_lines(root / "images.txt", images)
    write_lines(root / "image_class_labels.txt", labels)
    write_lines(root / "classes.txt", [f"{i} {name}" for i, name in enumerate(names, start=1)])
    return root


def write_cars(parent: Path, classes: int = 8, per_class: int = 4, seed: int = 0) -> Path:
    """``parent/cars_annos.mat`` (a 1 x N struct array ``annotations`` and a 1 x C cell
    ``class_names``, as the real file) and ``parent/car_ims/NNNNNN.jpg``; returns ``parent``.

    The annotations interleave the classes, as the real file's images are out of class order.
    """
    rng = np.random.default_rng(seed)
    colours = class_colours(classes)
    class_ids = [1 + index % classes for index in range(classes * per_class)]
    annotations = np.zeros((1, len(class_ids)), dtype=[(field, object) for field in CARS_FIELDS])
    height, width = IMAGE_SHAPE
    for index, class_id in enumerate(class_ids):
        relative = f"car_ims/{index + 1:06d}.jpg"
        write_jpeg(parent / relative, colours[class_id - 1], rng)
        record = annotations[0, index]
        record["relative_im_path"] = relative
        for field, value in zip(CARS_FIELDS[1:5], (1, 1, width, height), strict=True):
            record[field] = np.array([[value]], dtype=np.uint16)
        record["class"] = np.array([[class_id]], dtype=np.uint8)
        record["test"] = np.array([[index % 2]], dtype=np.uint8)
    names = np.empty((1, classes), dtype=object)
    names[0, :] = [
        f"Make{class_id} Model Sedan 20{class_id:02d}" for class_id in range(1, classes + 1)
    ]
    parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(parent / "cars_annos.mat", {"annotations": annotations, "class_names": names})
    return parent


def write_sop(parent: Path, classes: int = 8, per_class: int = 4, seed: int = 0) -> Path:
    """``parent/Stanford_Online_Products`` with ``Ebay_train.txt`` (the first half of the
    products) and ``Ebay_test.txt`` (the second half), real header and ``\\r\\n`` line ends,
    images under ``<super class>_final/``; returns the archive folder."""
    rng = np.random.default_rng(seed)
    colours = class_colours(classes)
    root = parent / SOP_FOLDER
    half = classes // 2
    for name, products in (
        ("Ebay_train.txt", range(1, half + 1)),
        ("Ebay_test.txt", range(half + 1, classes + 1)),
    ):
        lines = [SOP_HEADER]
        for class_id in products:
            super_class = 1 + (class_id - 1) % 2
            folder = ("bicycle_final", "chair_final")[super_class - 1]
            product = 111085122871 + class_id
            for number in range(per_class):
                relative = f"{folder}/{product}_{number}.JPG"
                write_jpeg(root / relative, colours[class_id - 1], rng)
                lines.append(f"{len(lines)} {class_id} {super_class} {relative}")
        write_lines(root / name, lines, ending="\r\n")
    return root


def write_lfw(
    parent: Path, people: int = 8, per_person: int = 4, folds: int = 2, seed: int = 0
) -> Path:
    """``parent/lfw/<Name>/<Name>_NNNN.jpg`` and ``parent/pairs.txt`` (header
    ``<folds>\\t<n>``, then per fold ``n`` matched and ``n`` mismatched pairs, tab-separated);
    returns ``parent``."""
    if people < 2 or per_person < 2:
        raise ValueError("pairs need two people and two images of each")
    rng = np.random.default_rng(seed)
    colours = class_colours(people)
    names = [
        f"Person_{chr(ord('A') + index // 26)}{chr(ord('a') + index % 26)}"
        for index in range(people)
    ]
    for index, name in enumerate(names):
        for number in range(1, per_person + 1):
            write_jpeg(parent / LFW_FOLDER / name / f"{name}_{number:04d}.jpg", colours[index], rng)
    size = people // 2
    lines = [f"{folds}\t{size}"]
    for fold in range(folds):
        for pair in range(size):
            name = names[(fold * size + pair) % people]
            first, second = 1 + pair % per_person, 1 + (pair + 1) % per_person
            lines.append(f"{name}\t{first}\t{second}")
        for pair in range(size):
            one = (fold * size + pair) % people
            other = (one + 1 + fold) % people
            if other == one:
                other = (one + 1) % people
            lines.append(
                f"{names[one]}\t{1 + pair % per_person}\t{names[other]}\t"
                f"{1 + (pair + fold) % per_person}"
            )
    write_lines(parent / "pairs.txt", lines)
    return parent
