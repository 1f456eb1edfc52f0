"""CUB-200-2011 as its archive unpacks: three index files beside an ``images/`` folder.

An image's class is given by ids in ``image_class_labels.txt``, not by its folder, and the
literature's split (the first half of the class ids trains, the second half tests) is defined
on those ids, so the reader follows the ids and checks that the three files agree with each
other: an image without a class, or a class id that ``classes.txt`` does not name, would
otherwise surface as a wrong label or a missing class deep inside training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import require_path
from margin_tune.trainables.data.files import ImageFiles, image_files
from margin_tune.trainables.data.layouts.index_text import bad_line, read_lines
from margin_tune.trainables.errors import ConfigError, quote

FOLDER = "CUB_200_2011"
IMAGES = "images.txt"
LABELS = "image_class_labels.txt"
CLASSES = "classes.txt"
IMAGE_FOLDER = "images"

ID = re.compile(r"[0-9]{1,18}")
"""An id as the index files write it: decimal digits only (``int`` alone would also take signs,
underscores and other scripts' digits)."""


@dataclass(frozen=True)
class Entry:
    """One ``<id> <value>`` line of an index file, kept with where it came from for messages."""

    value: str
    number: int
    line: str


def load_cub(config: DatasetConfig) -> ImageFiles:
    """Every image ``images.txt`` lists, labelled by class name, with the literature's split.

    ``dataset.path`` is the ``CUB_200_2011`` folder or the folder holding it. Raw labels are
    the names in ``classes.txt`` (``001.Black_footed_Albatross``: sorted order is id order);
    the test classes are ids above ``C // 2`` for ``C`` classes.

    Raises:
        ConfigError: an index file missing or unreadable, a malformed or repeated line, an
            image without a class, a class for an image id ``images.txt`` lacks, a class id
            out of range, or (from :func:`image_files`) an image missing or truncated.
    """
    root = _archive(require_path(config))
    images = _read_table(root / IMAGES, "<image_id> <path>")
    labels = _read_table(root / LABELS, "<image_id> <class_id>")
    classes = _read_table(root / CLASSES, "<class_id> <class name>")
    _check_class_ids(root / CLASSES, classes)
    class_of = _class_of_image(root, images, labels, classes)
    order = list(images)
    half = len(classes) // 2
    return image_files(
        config,
        root,
        [f"{IMAGE_FOLDER}/{images[image].value}" for image in order],
        [classes[class_of[image]].value for image in order],
        "cub",
        test_classes={classes[label].value for label in class_of.values() if label > half},
        listed_in=str(root / IMAGES),
    )


def _archive(path: Path) -> Path:
    """The ``CUB_200_2011`` folder: ``path`` itself, or its subfolder of that name."""
    inner = path / FOLDER
    return inner if inner.is_dir() else path


def _read_table(path: Path, form: str) -> dict[int, Entry]:
    """An index file's ``<id> <value>`` lines by id, each id once."""
    table: dict[int, Entry] = {}
    for number, line in read_lines(path, FOLDER):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not ID.fullmatch(parts[0]):
            raise bad_line(path, number, line, f"expected {form}")
        key = int(parts[0])
        if key in table:
            raise bad_line(path, number, line, f"id {key} repeats line {table[key].number}")
        table[key] = Entry(parts[1].strip(), number, line)
    return table


def _check_class_ids(path: Path, classes: dict[int, Entry]) -> None:
    """``classes.txt`` numbers its classes ``1..C``: the split is defined on that numbering."""
    for key, entry in classes.items():
        if not 1 <= key <= len(classes):
            raise bad_line(
                path, entry.number, entry.line, f"class id {key} out of range 1..{len(classes)}"
            )


def _class_of_image(
    root: Path, images: dict[int, Entry], labels: dict[int, Entry], classes: dict[int, Entry]
) -> dict[int, int]:
    """Each image id's class id, every image labelled once with a class ``classes.txt`` names."""
    labels_path = root / LABELS
    class_of: dict[int, int] = {}
    for image, entry in labels.items():
        if image not in images:
            raise bad_line(
                labels_path, entry.number, entry.line, f"image id {image} is not in {IMAGES}"
            )
        if not ID.fullmatch(entry.value):
            raise bad_line(labels_path, entry.number, entry.line, "expected <image_id> <class_id>")
        label = int(entry.value)
        if label not in classes:
            raise bad_line(
                labels_path,
                entry.number,
                entry.line,
                f"class id {label} out of range 1..{len(classes)} ({root / CLASSES})",
            )
        class_of[image] = label
    for image, entry in images.items():
        if image not in class_of:
            raise ConfigError(
                "dataset.path",
                f"{labels_path} gives no class for image id {image} "
                f"({root / IMAGES} line {entry.number}: {quote(entry.line)})",
            )
    return class_of
