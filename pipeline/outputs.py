"""Output directories: created only after every input was checked, never overwritten."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from trainables.errors import ConfigError


def check_output_dir(path: Path, *, field: str = "--out") -> None:
    """Refuse a non-empty existing directory (or a file) before anything is computed."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(field, f"{path} already exists and is not empty; choose a new directory")


def create_output_dir(path: Path, *, field: str = "--out") -> Path:
    check_output_dir(path, field=field)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=2) + "\n", encoding="utf-8")


class CsvAppender:
    """Appends rows as they come, so an interrupted run keeps every finished epoch on disk."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = list(columns)
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(self.columns)

    def append(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow([_csv_value(row.get(name)) for name in self.columns])


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _json_safe(value: Any) -> Any:
    """JSON has no NaN: write null, which every reader understands."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
