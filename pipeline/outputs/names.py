"""Names a user gives that become file or folder names: checked at the edge, never trusted.

A comparison's method names become ``splits/<split>/sweeps/<method>/`` and
``spaces/<method>.yaml`` inside ``--out``; an absolute name or ``../x`` would otherwise write
outside it. Instead of mapping hostile names to safe ones (two names could then meet in one
folder), such a name is refused with the characters that are allowed.
"""

from __future__ import annotations

import re

from margin_tune.trainables.errors import ConfigError

#: A file name on every platform: a letter or digit first, then letters, digits, ``_ . -``.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ALLOWED = "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit"
#: MLflow keeps experiment names in a 256-character column.
MAX_EXPERIMENT_NAME = 256


def check_file_name(name: str, field: str) -> str:
    """``name`` if it is safe as one path component, else a ConfigError naming ``field``."""
    if not FILE_NAME.fullmatch(name):
        raise ConfigError(
            field, f"{_shown(name)} is not a usable name; it becomes a folder name: {ALLOWED}"
        )
    return name


def check_experiment_name(name: str, field: str = "--experiment") -> str:
    """An MLflow experiment name: not empty, printable, at most 256 characters."""
    if not name.strip() or len(name) > MAX_EXPERIMENT_NAME or not name.isprintable():
        raise ConfigError(
            field,
            f"{_shown(name)} is not a usable experiment name: 1-{MAX_EXPERIMENT_NAME} printable "
            "characters, not only spaces",
        )
    return name


def _shown(name: str) -> str:
    """The name as the message quotes it: repr, at most 80 characters."""
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."
