"""``compare --register-model NAME``: the comparison's winner in the MLflow Model Registry.

The method is the one the comparison table ranks first on its primary test metric (its mean
over the unit of replication): that is the comparison's finding. Which of that method's
re-trainings is registered is chosen by validation, the primary metric on validation classes
at the last epoch, never by test: picking the run with the best test score would report a
test number that selection has seen. The version gets the alias ``champion`` (aliases, not
the deprecated stages), and tags saying how it was chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from margin_tune.pipeline.jobs.compare.spec import CompareSpec
from margin_tune.pipeline.sweep.models import MODEL_NAME
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    MEASURED_STATUSES,
    METHOD_TAG,
    SELECTED_BY_TAG,
    SPLIT_TAG,
)
from margin_tune.trainables.metric_names import best_mode

#: The alias the registered version gets.
ALIAS = "champion"


@dataclass(frozen=True)
class Registration:
    """What ``--register-model`` registered."""

    name: str
    version: str
    alias: str
    method: str
    run_id: str
    split: int
    seed: int
    selected_by: str
    validation_value: float
    test_mean: float


def choose(table: pd.DataFrame, runs: pd.DataFrame, spec: CompareSpec) -> pd.Series | None:
    """The run to register: of the table's best method by the primary test mean, the
    re-training with the best validation value; None when no method has a measured run."""
    column = f"{spec.primary}_mean"
    ranked = table.dropna(subset=[column])
    if ranked.empty:
        return None
    maximise = best_mode(spec.primary) == "max"
    best = ranked.loc[ranked[column].idxmax() if maximise else ranked[column].idxmin()]
    candidates = runs[
        (runs["method"] == best["method"])
        & runs["status"].isin(MEASURED_STATUSES)
        & runs[spec.metric].notna()
    ]
    if candidates.empty:
        return None
    validation_max = spec.mode == "max"
    index = candidates[spec.metric].idxmax() if validation_max else candidates[spec.metric].idxmin()
    return candidates.loc[index]


def register_winner(
    tracker: Tracker, name: str, table: pd.DataFrame, runs: pd.DataFrame, spec: CompareSpec
) -> Registration | None:
    """Register the chosen run's logged model as a new version of ``name``, alias
    :data:`ALIAS`; None when there is nothing to register."""
    row = choose(table, runs, spec)
    if row is None or not isinstance(row.get("run_id"), str):
        return None
    column = f"{spec.primary}_mean"
    test_mean = float(table.loc[table["method"] == row["method"], column].iloc[0])
    value = float(row[spec.metric])
    tags = {
        METHOD_TAG: str(row["method"]),
        SPLIT_TAG: str(int(row["split"])),
        SELECTED_BY_TAG: f"method: best {column} in the comparison table; run: best "
        f"{spec.metric} (validation) among its re-trainings",
    }
    version = tracker.register_model(name, str(row["run_id"]), MODEL_NAME, alias=ALIAS, tags=tags)
    return Registration(
        name=name,
        version=version,
        alias=ALIAS,
        method=str(row["method"]),
        run_id=str(row["run_id"]),
        split=int(row["split"]),
        seed=int(row["seed"]),
        selected_by=spec.metric,
        validation_value=value,
        test_mean=test_mean if not math.isnan(test_mean) else float("nan"),
    )
