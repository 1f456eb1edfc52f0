"""``tune --objectives``: several metrics at once, and the Pareto front they leave.

A researcher choosing a margin schedule often trades retrieval quality against cost (seconds
an epoch, a larger batch) or against a second quality measure. One weighted score hides the
trade; a multi-objective sampler (Optuna's TPE or NSGA-II) searches for the whole front of
configs that no other config beats on every objective at once.

``--objectives val_map_at_r:max,epoch_seconds:min``: any metric a trial reports each epoch,
each with its direction (``max`` or ``min``, always written: ``epoch_seconds`` has none of its
own). The
first is the *primary* one: progress lines, ``best_*`` and the winner's logged network use it,
as a single-metric sweep uses its metric. Each objective is read at the trial's last epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import (
    COLLAPSED,
    COUNT_COLUMNS,
    EPOCH,
    VALID_TRIPLETS,
    epoch_columns,
)

FIELD = "--objectives"
MODES = ("max", "min")


@dataclass(frozen=True)
class Objective:
    """One metric to optimise, and which way."""

    metric: str
    mode: Literal["max", "min"]

    def __str__(self) -> str:
        return f"{self.metric}:{self.mode}"


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """``"a:max,b:min"`` as objectives, checked for form (two or more, distinct, a direction
    each); which metrics exist is checked by :func:`check_reported`.

    Raises:
        ConfigError: naming ``--objectives``.
    """
    objectives = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ConfigError(FIELD, f"empty objective in {text!r}; write metric:max,metric:min")
        metric, _, mode = item.partition(":")
        metric, mode = metric.strip(), mode.strip()
        if not mode:
            raise ConfigError(FIELD, f"{item!r}: say which way, {metric}:max or {metric}:min")
        if mode not in MODES:
            raise ConfigError(
                FIELD, f"{item!r}: unknown direction {mode!r}; allowed: {', '.join(MODES)}"
            )
        objectives.append(Objective(metric, "max" if mode == "max" else "min"))
    names = [objective.metric for objective in objectives]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(FIELD, f"{', '.join(repeated)} given twice")
    if len(objectives) < 2:
        raise ConfigError(
            FIELD,
            f"{text!r} is one objective; give two or more (metric:max,metric:min), or tune one "
            "metric with the space's metric",
        )
    return tuple(objectives)


def check_reported(objectives: Iterable[Objective], reported: Sequence[str]) -> None:
    """Every objective is a metric each epoch reports (``reported``).

    Raises:
        ConfigError: naming ``--objectives`` and listing what is reported.
    """
    for objective in objectives:
        if objective.metric not in reported:
            raise ConfigError(
                FIELD,
                f"unknown metric {objective.metric!r}; a trial reports: {', '.join(reported)}",
            )


def objectives_text(objectives: Iterable[Objective]) -> str:
    """The form :func:`parse_objectives` reads: ``val_map_at_r:max,epoch_seconds:min``."""
    return ",".join(map(str, objectives))


def reported_metrics(ks: tuple[int, ...]) -> tuple[str, ...]:
    """What a trial reports each epoch that can be optimised: every epoch column but the epoch
    number, counts and the collapse flag (Recall@K at ``ks``)."""
    left_out = {EPOCH, COLLAPSED, VALID_TRIPLETS, *COUNT_COLUMNS}
    return tuple(name for name in epoch_columns(ks) if name not in left_out)
