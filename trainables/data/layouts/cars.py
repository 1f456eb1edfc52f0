"""Cars196 as its archive unpacks: ``cars_annos.mat`` beside the ``car_ims/`` folder.

The only record of each image's class is a MATLAB struct array, so the reader opens it with
SciPy and checks each annotation's fields itself: ``loadmat`` gives nested object arrays whose
shape depends on how the file was written, and a wrong one would otherwise fail as an index
error with no hint of which annotation is at fault. The literature splits Cars196 by class
(the first 98 models train, the last 98 test), not by the file's ``test`` flag, which is the
classification benchmark's split of every class's images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import require_path
from margin_tune.trainables.data.files import ImageFiles, image_files
from margin_tune.trainables.errors import ConfigError, quote

ANNOTATIONS_FILE = "cars_annos.mat"
ANNOTATIONS = "annotations"
CLASS_NAMES = "class_names"
PATH_FIELD = "relative_im_path"
CLASS_FIELD = "class"
FIELDS = (PATH_FIELD, CLASS_FIELD)
"""The annotation fields the reader needs; the bounding boxes and ``test`` flag are not read."""

LABEL_DIGITS = 3
"""Least width of the zero-padded class id that starts each raw label, so that the labels'
sorted order is the ids' numeric order."""


def load_cars(config: DatasetConfig) -> ImageFiles:
    """Every annotated image, labelled ``"<id> <model name>"``, class ids above ``C // 2`` as
    the test classes.

    Raises:
        ConfigError: ``cars_annos.mat`` missing, unreadable or without ``annotations``,
            ``class_names`` or an annotation field the reader needs, a field of the wrong
            kind, a class id out of range, or (from :func:`image_files`) an image missing or
            truncated.
    """
    root = require_path(config)
    path = root / ANNOTATIONS_FILE
    contents = _load_mat(path)
    names = [
        _text(name, path, f"{CLASS_NAMES} entry {index}")
        for index, name in enumerate(_variable(contents, CLASS_NAMES, path).ravel(), start=1)
    ]
    annotations = _annotations(contents, path)
    files: list[str] = []
    class_ids: list[int] = []
    for index, record in enumerate(annotations, start=1):
        where = f"annotation {index}"
        files.append(_text(record[PATH_FIELD], path, f"{where} {PATH_FIELD}"))
        class_ids.append(_class_id(record[CLASS_FIELD], len(names), path, where))
    width = max(LABEL_DIGITS, len(str(len(names))))
    labels = [f"{class_id:0{width}d} {names[class_id - 1]}" for class_id in class_ids]
    half = len(names) // 2
    return image_files(
        config,
        root,
        files,
        labels,
        "cars",
        test_classes={
            label for label, class_id in zip(labels, class_ids, strict=True) if class_id > half
        },
        listed_in=str(path),
    )


def _load_mat(path: Path) -> dict[str, Any]:
    """The two variables the reader uses, read from a MATLAB (v4 to v7.2) file."""
    if not path.is_file():
        raise ConfigError(
            "dataset.path", f"{path} does not exist; dataset.path must hold it and car_ims/"
        )
    try:
        return scipy.io.loadmat(path, variable_names=(ANNOTATIONS, CLASS_NAMES))
    except (OSError, ValueError, NotImplementedError, MatReadError) as error:
        raise ConfigError("dataset.path", f"cannot read {path}: {error}") from None


def _variable(contents: dict[str, Any], name: str, path: Path) -> np.ndarray:
    if name not in contents:
        raise ConfigError("dataset.path", f"{path} has no variable {name!r}")
    return np.asarray(contents[name])


def _annotations(contents: dict[str, Any], path: Path) -> np.ndarray:
    """The annotation struct array, flat, checked to have every field the reader needs."""
    annotations = _variable(contents, ANNOTATIONS, path)
    present = annotations.dtype.names or ()
    if not present:
        raise ConfigError("dataset.path", f"{path}: {ANNOTATIONS!r} is not a struct array")
    for field in FIELDS:
        if field not in present:
            raise ConfigError(
                "dataset.path",
                f"{path}: {ANNOTATIONS!r} has no field {field!r} (fields: {', '.join(present)})",
            )
    return annotations.ravel()


def _scalar(value: object) -> object:
    """The one value inside ``loadmat``'s nesting (a cell holds an array holds the value)."""
    while isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value


def _text(value: object, path: Path, where: str) -> str:
    text = _scalar(value)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("dataset.path", f"{path}: {where} is not text: {quote(value)}")
    return text.strip()


def _class_id(value: object, count: int, path: Path, where: str) -> int:
    """A class id in ``1..count``, the numbering ``class_names`` gives."""
    number = _scalar(value)
    if isinstance(number, np.floating) and np.isfinite(number) and number.is_integer():
        number = int(number)  # MATLAB's default numeric class is double
    if not isinstance(number, int | np.integer):
        raise ConfigError(
            "dataset.path", f"{path}: {where} {CLASS_FIELD} is not an integer: {quote(value)}"
        )
    class_id = int(number)
    if not 1 <= class_id <= count:
        raise ConfigError(
            "dataset.path",
            f"{path}: {where}: class id {class_id} out of range 1..{count} ({CLASS_NAMES} has "
            f"{count} entries)",
        )
    return class_id
