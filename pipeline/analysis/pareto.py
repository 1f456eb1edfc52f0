"""The Pareto front of a multi-objective sweep: the trials no other trial beats on every
objective (:func:`~margin_tune.pipeline.analysis.plots.pareto_plot` draws it).

Only trials that trained the whole budget compete, as for a single-metric sweep's winner: an
early-stopped or failed trial's values were measured at another epoch, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

#: The column a trials table gets: whether the trial is on the front.
ON_FRONT = "pareto"


class Direction(Protocol):
    """One objective as the front needs it (:class:`~margin_tune.pipeline.search.objectives.
    Objective` is one)."""

    @property
    def metric(self) -> str: ...

    @property
    def mode(self) -> str: ...


@dataclass(frozen=True)
class LoggedObjective:
    """An objective as a sweep's run logged it (the ``objectives`` param)."""

    metric: str
    mode: str


def logged_objectives(text: str) -> tuple[LoggedObjective, ...]:
    """The ``objectives`` param of a sweep run (``val_map_at_r:max,epoch_seconds:min``), which
    ``tune`` checked before it logged it; empty for a single-metric sweep."""
    items = [item.partition(":") for item in text.split(",") if item]
    return tuple(LoggedObjective(metric, mode) for metric, _, mode in items)


def pareto_mask(values: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Which rows of ``values`` (trials × objectives) no other row dominates: at least as good
    on every objective and better on one. Equal rows are both on the front."""
    signed = np.where(np.asarray(maximise), values, -values)
    front = np.ones(len(signed), dtype=bool)
    for index, row in enumerate(signed):
        at_least = (signed >= row).all(axis=1)
        better = (signed > row).any(axis=1)
        front[index] = not (at_least & better).any()
    return front


def pareto_front(trials: pd.DataFrame, objectives: Sequence[Direction]) -> pd.DataFrame:
    """The completed trials on the front, best first by the first objective."""
    metrics = [objective.metric for objective in objectives]
    if trials.empty or any(metric not in trials for metric in metrics):
        return trials.iloc[0:0]
    status = trials["status"] if "status" in trials else pd.Series("completed", trials.index)
    scored = trials[(status == "completed") & trials[metrics].notna().all(axis=1)]
    if scored.empty:
        return scored
    mask = pareto_mask(scored[metrics].to_numpy(dtype=float), [o.mode == "max" for o in objectives])
    first = objectives[0]
    return scored[mask].sort_values(first.metric, ascending=first.mode == "min")
