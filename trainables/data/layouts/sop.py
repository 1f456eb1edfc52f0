"""Stanford Online Products as its archive unpacks: ``Ebay_train.txt`` and ``Ebay_test.txt``.

The two files are the literature's split (11,318 training products, 11,316 test products), so
the reader keeps which file each product came from as the test classes, and refuses a product
listed in both: its images would be trained on and then scored as unseen.
"""

from __future__ import annotations

import re
from pathlib import Path

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import require_path
from margin_tune.trainables.data.files import ImageFiles, image_files
from margin_tune.trainables.data.layouts.index_text import bad_line, read_lines
from margin_tune.trainables.errors import ConfigError

FOLDER = "Stanford_Online_Products"
TRAIN = "Ebay_train.txt"
TEST = "Ebay_test.txt"
HEADER = ("image_id", "class_id", "super_class_id", "path")
COLUMNS = len(HEADER)

ID = re.compile(r"[0-9]{1,18}")
"""An id as the files write it: decimal digits only (``int`` alone would also take signs,
underscores and other scripts' digits)."""

LABEL_DIGITS = 5
"""Width of the zero-padded class id used as raw label (SOP has 22,634 classes), so that the
labels' sorted order is the ids' numeric order."""


def load_sop(config: DatasetConfig) -> ImageFiles:
    """Every image of both files (training first), labelled by product, the test file's
    products as the test classes.

    ``dataset.path`` is the ``Stanford_Online_Products`` folder or the folder holding it.

    Raises:
        ConfigError: a file missing or unreadable, a wrong header, a malformed line, a class
            id in both files, or (from :func:`image_files`) an image missing or truncated.
    """
    root = _archive(require_path(config))
    train_files, train_classes = _read_listing(root / TRAIN)
    test_files, test_classes = _read_listing(root / TEST)
    _check_disjoint(root, train_classes, test_classes)
    listing = train_files + test_files
    return image_files(
        config,
        root,
        [path for path, _ in listing],
        [_raw_label(label) for _, label in listing],
        "sop",
        test_classes={_raw_label(label) for label in test_classes},
        listed_in=f"{root / TRAIN} or {root / TEST}",
    )


def _archive(path: Path) -> Path:
    """The ``Stanford_Online_Products`` folder: ``path`` itself, or its subfolder of that name."""
    inner = path / FOLDER
    return inner if inner.is_dir() else path


def _raw_label(class_id: int) -> str:
    return f"{class_id:0{LABEL_DIGITS}d}"


def _read_listing(path: Path) -> tuple[list[tuple[str, int]], dict[int, int]]:
    """The file's ``(path, class id)`` rows, and the line each class id first appears on."""
    lines = read_lines(path, FOLDER)
    if not lines or tuple(lines[0][1].split()) != HEADER:
        line = lines[0][1] if lines else ""
        raise bad_line(path, 1, line, f"expected the header {' '.join(HEADER)!r}")
    rows: list[tuple[str, int]] = []
    first_line: dict[int, int] = {}
    for number, line in lines[1:]:
        parts = line.split(maxsplit=COLUMNS - 1)
        if len(parts) != COLUMNS or not all(ID.fullmatch(part) for part in parts[:3]):
            raise bad_line(
                path, number, line, "expected <image_id> <class_id> <super_class_id> <path>"
            )
        class_id = int(parts[1])
        rows.append((parts[3].strip(), class_id))
        first_line.setdefault(class_id, number)
    return rows, first_line


def _check_disjoint(root: Path, train: dict[int, int], test: dict[int, int]) -> None:
    """No product in both files: the protocol's test classes are unseen in training."""
    for class_id, number in test.items():
        if class_id in train:
            raise ConfigError(
                "dataset.path",
                f"{root / TEST} line {number}: class id {class_id} is also in {root / TRAIN} "
                f"line {train[class_id]}; the training and test products must be disjoint",
            )
