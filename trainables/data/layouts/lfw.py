"""Labeled Faces in the Wild as its archive unpacks: a folder per person, and ``pairs.txt``.

LFW is scored on the fixed verification pairs of ``pairs.txt`` (ten folds of matched and
mismatched pairs), not on a class split, so the reader turns each pair into indices of the
listed files, checked here: a pair naming an image the archive lacks (a different funneling,
a partial extraction) would otherwise silently change the protocol being reported.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import require_path
from margin_tune.trainables.data.files import ImageFiles, ProtocolPairs, image_files
from margin_tune.trainables.data.layouts.index_text import bad_line, read_lines
from margin_tune.trainables.errors import ConfigError, quote

FOLDERS = ("lfw", "lfw-deepfunneled", "lfw_funneled")
"""The identities folder's names in the published archives, tried in this order."""

PAIRS = "pairs.txt"
SUFFIX = ".jpg"
MATCHED_FORM = "<name> <i> <j> (a matched pair)"
MISMATCHED_FORM = "<name> <i> <other name> <j> (a mismatched pair)"

NUMBER = re.compile(r"[0-9]{1,9}")
"""A count or an image number as ``pairs.txt`` writes it: decimal digits only."""


def load_lfw(config: DatasetConfig) -> ImageFiles:
    """Every ``.jpg`` under the identity folders (sorted by identity, then file), labelled by
    identity, with the pairs of ``pairs.txt`` where there is one.

    ``dataset.path`` is the identities folder or a folder holding one named as in
    :data:`FOLDERS`; ``pairs.txt`` is looked for in ``dataset.path``, then beside the
    identities folder. Without it the dataset has no pairs. LFW has no class split of its own.

    Raises:
        ConfigError: no identity folder with a ``.jpg``, ``pairs.txt`` unreadable, with a
            malformed header or line, fewer or more lines than its header gives, or a pair
            naming an image that is not there; or (from :func:`image_files`) a truncated image.
    """
    path = require_path(config)
    identities = _identities_folder(path)
    files = _list_images(identities)
    pairs_path = _find_pairs(path, identities)
    pairs = None
    if pairs_path is not None:
        index_of = {relative: index for index, relative in enumerate(files)}
        pairs = _read_pairs(pairs_path, identities, index_of)
    return image_files(
        config,
        identities,
        files,
        [relative.split("/", 1)[0] for relative in files],
        "lfw",
        pairs=pairs,
        listed_in=str(identities),
    )


def _identities_folder(path: Path) -> Path:
    if not path.is_dir():
        raise ConfigError("dataset.path", f"{path} is not a folder of identity folders")
    for name in FOLDERS:
        if (path / name).is_dir():
            return path / name
    return path


def _list_images(identities: Path) -> list[str]:
    """``<identity>/<file>`` of every ``.jpg``, sorted, hidden entries skipped."""
    files = [
        f"{folder.name}/{image.name}"
        for folder in sorted(identities.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
        for image in sorted(folder.iterdir())
        if image.suffix.lower() == SUFFIX and not image.name.startswith(".") and image.is_file()
    ]
    if not files:
        raise ConfigError(
            "dataset.path",
            f"{identities} holds no identity folders with {SUFFIX} images; dataset.path must be "
            f"LFW's identities folder or hold one named {' or '.join(FOLDERS)}",
        )
    return files


def _find_pairs(path: Path, identities: Path) -> Path | None:
    for candidate in (path / PAIRS, identities.parent / PAIRS):
        if candidate.exists():
            return candidate
    return None


def _read_pairs(path: Path, identities: Path, index_of: dict[str, int]) -> ProtocolPairs:
    """The header's ``folds`` x (``n`` matched then ``n`` mismatched) pairs, as indices."""
    lines = read_lines(path)
    folds, size = _header(path, lines)
    expected = 1 + folds * 2 * size
    if len(lines) < expected:
        raise ConfigError(
            "dataset.path",
            f"{path} has {len(lines)} lines; its header ({quote(lines[0][1])}: {folds} folds of "
            f"{size} matched and {size} mismatched pairs) needs {expected}",
        )
    if len(lines) > expected:
        number, line = lines[expected]
        raise bad_line(path, number, line, f"beyond the {expected} lines the header gives")
    first: list[int] = []
    second: list[int] = []
    same: list[bool] = []
    fold: list[int] = []
    for offset, (number, line) in enumerate(lines[1:]):
        fold_index, position = divmod(offset, 2 * size)
        matched = position < size
        one, other = _pair(path, number, line, matched)
        first.append(_index(one, index_of, path, identities, number, line))
        second.append(_index(other, index_of, path, identities, number, line))
        same.append(matched)
        fold.append(fold_index)
    return ProtocolPairs(
        first=np.array(first, dtype=np.int64),
        second=np.array(second, dtype=np.int64),
        same=np.array(same, dtype=bool),
        fold=np.array(fold, dtype=np.int64),
    )


def _header(path: Path, lines: list[tuple[int, str]]) -> tuple[int, int]:
    """``<folds> <pairs of each kind per fold>``, both positive."""
    line = lines[0][1] if lines else ""
    parts = line.split()
    if len(parts) != 2 or not all(NUMBER.fullmatch(part) and int(part) > 0 for part in parts):
        raise bad_line(path, 1, line, "expected the header <folds> <pairs per fold and kind>")
    return int(parts[0]), int(parts[1])


def _pair(path: Path, number: int, line: str, matched: bool) -> tuple[str, str]:
    """The pair's two images, as paths relative to the identities folder."""
    parts = line.split()
    if matched and len(parts) == 3:
        names_and_numbers = [(parts[0], parts[1]), (parts[0], parts[2])]
    elif not matched and len(parts) == 4:
        names_and_numbers = [(parts[0], parts[1]), (parts[2], parts[3])]
    else:
        names_and_numbers = []
    if not names_and_numbers or not all(
        NUMBER.fullmatch(image) and int(image) > 0 for _, image in names_and_numbers
    ):
        raise bad_line(
            path, number, line, f"expected {MATCHED_FORM if matched else MISMATCHED_FORM}"
        )
    one, other = (f"{name}/{name}_{int(image):04d}{SUFFIX}" for name, image in names_and_numbers)
    return one, other


def _index(
    relative: str, index_of: dict[str, int], path: Path, identities: Path, number: int, line: str
) -> int:
    if relative not in index_of:
        raise bad_line(path, number, line, f"no image {identities / relative}")
    return index_of[relative]
