"""``margin-tune ablate``: every cell of a factorial grid × training seeds, as Ray Tune trials.

No searcher and no early stopping: each cell runs its full epochs with every seed, on the same
class split, and is evaluated on the test classes after its last epoch. The summary is per
cell (mean with a 95% CI over seeds) and per factor (main effects).

Main effect of a factor at a level: for each seed, the mean of the metric over the cells where
the factor takes that level; then the mean of those per-seed values over seeds, with its CI.
A factor nested under another's level (a scheduler's parameter) is averaged over the cells
where it varies only. ``effect`` is that level's mean minus the mean of the factor's levels.

Resumable (``margin-tune resume``): the grid is one Tune experiment, so finished trials are
kept and the others continue from their last checkpoint, each in the MLflow run it opened
(found by cell and seed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from margin_tune.pipeline.analysis.statistics import interval_table, mean_interval
from margin_tune.pipeline.jobs.ablate.grid import AblationGrid
from margin_tune.pipeline.sweep.grid_trials import (
    GridPointConfig,
    completed_metrics,
    run_grid_trials,
)
from margin_tune.pipeline.sweep.inputs import SCORED_CONTEXTS, DatasetInputs
from margin_tune.pipeline.sweep.plan import SweepOptions
from margin_tune.pipeline.sweep.trainable import run_ablation_trial
from margin_tune.pipeline.sweep.tuner import EXPERIMENT_DIR
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    ABLATION_KIND,
    ABLATION_STAGE,
    BEST_CELL_TAG,
    DATASET_FINGERPRINT_TAG,
    DATASET_TAG,
    KIND_TAG,
    STAGE_TAG,
    SWEEP_ID_TAG,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples, recall_ks
from margin_tune.trainables.metric_names import evaluation_metrics, on_test

#: Tags of every ablation trial run, beside its ``cell``.
ABLATION_TAGS = {STAGE_TAG: ABLATION_STAGE}


@dataclass
class AblationResult:
    """Per-run results, the per-cell table, the main effects and the parent run."""

    runs: pd.DataFrame
    cells: pd.DataFrame
    effects: pd.DataFrame
    run_id: str
    histories: dict[str, pd.DataFrame]
    """Per cell, the per-epoch history of its seed-0 run."""
    wall_seconds: float
    out: Path | None = None
    """The output directory: runs, cells, main effects, plots."""


def cell_configs(grid: AblationGrid) -> dict[str, dict[str, Any]]:
    """Each cell's trial config, as plain data (what the trials and ``sync`` rebuild it from)."""
    return {cell.label: cell.config.to_dict() for cell in grid.cells}


def run_ablation(
    grid: AblationGrid,
    base: Config,
    dataset: Samples,
    options: SweepOptions,
    out: Path,
    tracker: Tracker,
    *,
    ablation_id: str,
) -> AblationResult:
    """Run, or continue, the grid inside an active Ray session, under one parent run."""
    parent = tracker.sweep_run(
        name=f"ablate {grid.name}",
        sweep_id=ablation_id,
        params={
            "grid": grid.name,
            "factors": ",".join(grid.factor_paths),
            "cells": len(grid.cells),
            "seeds": grid.seeds,
            "trials": len(grid.cells) * grid.seeds,
            "metric": grid.metric,
            "mode": grid.mode,
            "epochs": base.train.epochs,
            "concurrency": options.concurrency,
            "split_seed": base.dataset.split_seed,
        },
        tags={
            SWEEP_ID_TAG: ablation_id,
            KIND_TAG: ABLATION_KIND,
            DATASET_TAG: base.dataset.name,
            DATASET_FINGERPRINT_TAG: dataset.fingerprint(),
        },
    )
    scored = DatasetInputs.build(dataset, [base.dataset], SCORED_CONTEXTS)
    tracker.log_inputs(parent, scored.every_record())
    if grid.source is not None:
        tracker.log_artifact(parent, str(grid.source), artifact_path="grid")
    started = time.perf_counter()
    synced = run_grid_trials(
        run_ablation_trial,
        GridPointConfig(cell_configs(grid), key="cell"),
        seeds=range(grid.seeds),
        dataset=dataset,
        options=options,
        directory=out / EXPERIMENT_DIR,
        tracker=tracker,
        parent_run_id=parent,
        tags=ABLATION_TAGS,
        title=f"ablation {grid.name}",
        metric=grid.metric,
    )
    wall_seconds = time.perf_counter() - started
    rows, histories = [], {}
    for trial in synced:
        params = trial.result.config or {}
        if params.get("seed") == 0 and trial.history is not None:
            histories[str(params["cell"])] = trial.history
        rows.append(
            run_row(grid, str(params["cell"]), int(params["seed"]), trial.status, trial.result)
            | {TRIAL_ID_TAG: trial.trial_id, "run_id": trial.run_id}
        )
    order = {cell.label: index for index, cell in enumerate(grid.cells)}
    runs = pd.DataFrame(rows)
    runs = runs.sort_values(["cell", "seed"], key=lambda c: c.map(order) if c.name == "cell" else c)
    runs = runs.reset_index(drop=True)
    cells = cell_table(runs, grid)
    effects = main_effects(runs, grid)
    _log_summary(tracker, parent, grid, cells, wall_seconds)
    return AblationResult(runs, cells, effects, parent, histories, wall_seconds)


def run_row(
    grid: AblationGrid, label: str, seed: int, status: str, result: tune.Result
) -> dict[str, Any]:
    """One trial as the tables take it: its cell's factor values, seed, status and metrics
    (NaN unless it completed)."""
    return {
        "cell": label,
        "seed": seed,
        "status": status,
        **grid.cell(label).values,
        **completed_metrics(status, result.metrics or {}, summary_columns(grid)),
    }


def summary_columns(grid: AblationGrid) -> dict[str, str]:
    """The metric the grid summarises, then every test metric, each once: with each Recall@K
    that any cell's dataset reports (``eval.recall_at``, or the literature's Ks)."""
    ks = tuple(sorted({k for cell in grid.cells for k in recall_ks(cell.config)}))
    names = dict.fromkeys((grid.metric, *map(on_test, evaluation_metrics(ks))))
    return {name: name for name in names}


def cell_table(runs: pd.DataFrame, grid: AblationGrid) -> pd.DataFrame:
    """One row per cell, in grid order: its factor values, counts, and each metric's mean,
    95% CI and n over seeds; ``rank`` orders the cells by the grid's metric (1 = best)."""
    table = interval_table(runs, "cell", [c.label for c in grid.cells], summary_columns(grid))
    for path in reversed(grid.factor_paths):
        values = [grid.cell(label).values.get(path) for label in table["cell"]]
        table.insert(1, path, pd.Series(values, dtype=object))
    table["rank"] = table[f"{grid.metric}_mean"].rank(
        ascending=grid.mode == "min", method="min", na_option="keep"
    )
    return table


def main_effects(runs: pd.DataFrame, grid: AblationGrid) -> pd.DataFrame:
    """Per factor and level: mean over seeds of the per-seed mean over that level's cells."""
    rows = []
    for path in grid.factor_paths:
        levels: dict[str, list[str]] = {}  # level (as text) → its cells
        for cell in grid.cells:
            if path in cell.values:
                levels.setdefault(str(cell.values[path]), []).append(cell.label)
        per_level = []
        for level, labels in levels.items():
            at_level = runs[runs["cell"].isin(labels)]
            per_seed = at_level.groupby("seed")[grid.metric].mean()  # NaN-skipping over cells
            interval = mean_interval(per_seed.to_numpy())
            per_level.append(
                {
                    "factor": path,
                    "level": level,
                    "cells": len(labels),
                    "mean": interval.mean,
                    "ci95": interval.half_width,
                    "seeds": interval.n,
                }
            )
        grand = pd.Series([row["mean"] for row in per_level], dtype=float).mean()
        rows += [row | {"effect": row["mean"] - grand} for row in per_level]
    return pd.DataFrame(
        rows, columns=["factor", "level", "cells", "mean", "ci95", "seeds", "effect"]
    )


def _log_summary(
    tracker: Tracker, parent: str, grid: AblationGrid, cells: pd.DataFrame, wall_seconds: float
) -> None:
    tracker.log_metrics(
        parent,
        {
            "wall_seconds": wall_seconds,
            "runs_collapsed": float(cells["collapsed"].sum()),
            "runs_failed": float(cells["failed"].sum()),
        },
    )
    ranked = cells.dropna(subset=[f"{grid.metric}_mean"])
    if ranked.empty:
        return
    best = ranked.sort_values("rank").iloc[0]
    tracker.log_metrics(parent, {f"best_cell_{grid.metric}": float(best[f"{grid.metric}_mean"])})
    tracker.set_tags(parent, {BEST_CELL_TAG: str(best["cell"])})
