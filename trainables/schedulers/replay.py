"""A schedule found elsewhere, replayed: μ per epoch from ``margin.schedule``.

Population-based training (``tune --population``) learns a schedule online: its best member's
μ and learning rate change over training time, partly by copying better members. Replaying
that schedule from scratch, with other training seeds, is how a comparison tests it like any
other method: the same values, epoch by epoch, blind to the new run's difficulty. The learning
rate half of a schedule is ``train.lr_schedule``, which the trial applies itself.

A schedule is a list of numbers in the config, so it travels with the config to every Ray
worker and into every run's ``config.yaml``. A user may name a ``schedule.csv`` instead (what a
population sweep writes, with columns ``epoch``, ``margin`` and ``train.lr``): it is read here,
at the edge, into those two lists.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from margin_tune.trainables.config import MarginConfig
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.schedulers.base import EpochStats, MarginScheduler, clip_margin

#: The columns of a schedule file this scheduler reads: μ per epoch, and the learning rate.
EPOCH_COLUMN = "epoch"
MARGIN_COLUMN = "margin"
LR_COLUMN = "train.lr"
#: Largest schedule file read (a schedule of 100,000 epochs is about 8 MB).
MAX_SCHEDULE_BYTES = 16 * 2**20


class ReplayMargin(MarginScheduler):
    """μ of epoch t is ``margin.schedule[t − 1]`` (within ``min_margin``/``max_margin``).

    Like ``linear`` it follows the clock, not the easy ratio; ``initial_margin`` is not read,
    the schedule's first value is the first epoch's μ.
    """

    parameters = ("schedule",)
    labels: Mapping[str, str] = MappingProxyType({})

    def __init__(self, config: MarginConfig) -> None:
        if not config.schedule:
            raise ConfigError(
                "margin.schedule",
                "scheduler replay needs μ for every epoch: a list of margins, or the path of a "
                "schedule.csv that tune --population wrote",
            )
        super().__init__(config)
        self.margin = self._at(0)

    def step(self, epoch: int, stats: EpochStats) -> float:
        self.margin = self._at(epoch)
        return self.margin

    def _at(self, index: int) -> float:
        schedule = self.config.schedule
        value = schedule[min(index, len(schedule) - 1)]
        return clip_margin(value, self.config.min_margin, self.config.max_margin)


def with_schedule_file(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with a ``margin.schedule`` that names a file replaced by the file's μ per epoch,
    and ``train.lr_schedule`` by its learning rates where the file has them and the config sets
    none. Any other ``data`` comes back as it is.

    Raises:
        ConfigError: naming ``margin.schedule``: the file cannot be read, lacks the ``margin``
            column, or holds a value that is not a finite number (with its line), or its epochs
            are not 1, 2, 3, ...
    """
    margin = data.get("margin")
    if not isinstance(margin, Mapping) or not isinstance(margin.get("schedule"), str):
        return data
    margins, rates = read_schedule_file(Path(margin["schedule"]))
    resolved = {**data, "margin": {**margin, "schedule": margins}}
    train = data.get("train") or {}
    # A train section that is not a mapping is left for the config to refuse.
    if (
        rates is not None
        and isinstance(train, Mapping)
        and train.get("lr_schedule") in (None, [], ())
    ):
        resolved["train"] = {**train, "lr_schedule": rates}
    return resolved


def read_schedule_file(path: Path) -> tuple[list[float], list[float] | None]:
    """μ per epoch and, when the file has a ``train.lr`` column, the learning rate per epoch."""
    field = "margin.schedule"
    try:
        if path.stat().st_size > MAX_SCHEDULE_BYTES:
            raise ConfigError(field, f"{path} is larger than {MAX_SCHEDULE_BYTES:,} bytes")
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(field, f"cannot read schedule file {path}: {error}") from None
    columns = set(rows[0]) if rows else set()
    if MARGIN_COLUMN not in columns:
        raise ConfigError(
            field,
            f"{path} needs a header with a {MARGIN_COLUMN!r} column (and optionally "
            f"{EPOCH_COLUMN!r} and {LR_COLUMN!r}) and one row per epoch; found "
            f"{', '.join(sorted(c for c in columns if c)) or 'no rows'}",
        )
    margins, rates = [], []
    for line, row in enumerate(rows, start=2):
        if EPOCH_COLUMN in columns and _number(row[EPOCH_COLUMN], path, line) != line - 1:
            raise ConfigError(
                field, f"{path}, line {line}: epoch {row[EPOCH_COLUMN]}, expected {line - 1}"
            )
        margins.append(_number(row[MARGIN_COLUMN], path, line))
        if LR_COLUMN in columns:
            rates.append(_number(row[LR_COLUMN], path, line))
    return margins, (rates if LR_COLUMN in columns else None)


def _number(text: str | None, path: Path, line: int) -> float:
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError("margin.schedule", f"{path}, line {line}: {text!r} is not a number")
    return value
