"""The text index files the benchmarks' archives ship, read line by line for messages that say
where a problem is: the file, the 1-based line number an editor shows, and the line."""

from __future__ import annotations

from pathlib import Path

from margin_tune.trainables.errors import ConfigError, quote


def read_lines(path: Path, folder: str | None = None) -> list[tuple[int, str]]:
    """A text file's lines, numbered from 1 and stripped, without the blank lines at its end.

    Splitting on ``\\n`` alone keeps the numbering an editor shows (``str.splitlines`` also
    breaks at form feeds and Unicode separators); stripping drops ``\\r``, and a BOM is read
    away by ``utf-8-sig``. ``folder``: the archive folder ``dataset.path`` must be or hold,
    named when the file is missing.

    Raises:
        ConfigError: the file is missing, unreadable or not UTF-8.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        where = f"; dataset.path must be the {folder} folder or hold it" if folder else ""
        raise ConfigError("dataset.path", f"{path} does not exist{where}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError("dataset.path", f"cannot read {path}: {error}") from None
    lines = [line.strip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return list(enumerate(lines, start=1))


def bad_line(path: Path, number: int, line: str, problem: str) -> ConfigError:
    """The error for line ``number`` of ``path``: where, what is wrong, and the line quoted."""
    return ConfigError("dataset.path", f"{path} line {number}: {problem}: {quote(line)}")
