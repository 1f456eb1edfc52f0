"""Reading sweeps, trials and comparisons back from MLflow into pandas tables.

Why read the store instead of the ``trials.csv`` a sweep writes: the store is the one place that
holds every sweep of an experiment, from every machine and every output directory, including
sweeps still running or cut short. Everything here is derived from what
:mod:`margin_tune.pipeline.sweep.tuner`,
:mod:`margin_tune.pipeline.sweep.callback` and :mod:`margin_tune.pipeline.jobs.compare.run` log;
nothing is
written back.

Layout read (see :mod:`margin_tune.pipeline.tracking.tracker`): a parent run per sweep or
comparison, tagged
``margin_tune.sweep_id`` and ``margin_tune.kind``; tuning trials nested under their sweep with
``margin_tune.trial_id``; final re-training runs nested under their comparison with
``margin_tune.stage = final``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from margin_tune.pipeline.analysis.pareto import logged_objectives, pareto_front
from margin_tune.pipeline.analysis.tables import summary_table
from margin_tune.pipeline.tracking.reader import (
    ExperimentRuns,
    listed,
    parent_id,
    run_kind,
    sweep_id_of,
)
from margin_tune.pipeline.tracking.vocabulary import (
    BEST_CELL_TAG,
    BEST_TRIAL_TAG,
    COMPARISON_KIND,
    FINAL_STAGE,
    MEASURED_STATUSES,
    METHOD_TAG,
    SCHEDULER_TAG,
    SEED_TAG,
    SPLIT_TAG,
    STAGE_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
    tag_value,
)
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import (
    EASY_RATIO,
    EPOCH,
    EPOCH_COLUMNS,
    MARGIN,
    TEST_PREFIX,
    VALIDATION_PREFIX,
    metrics_of,
    on_test,
)

FORMATS = ("table", "csv", "markdown")
Format = Literal["table", "csv", "markdown"]

_TRIAL_METRICS = (MARGIN, EASY_RATIO)
"""Shown beside the ``val_*`` metrics: the margin a scheduler ended at, and what drove it."""
_PARENT_COLUMNS = [
    "kind",
    "name",
    "sweep_id",
    "started",
    "status",
    "trials",
    "searcher",
    "metric",
    "best",
    "best_trial_id",
    "parent",
]


@dataclass(frozen=True)
class Table:
    """One titled table of a report; a report is a list of them."""

    title: str
    frame: pd.DataFrame


def build_report(
    client: MlflowClient, experiment: str, sweep: str | None = None, sort: str | None = None
) -> list[Table]:
    """The tables ``margin-tune report`` prints: an overview, a sweep, or a comparison."""
    runs = ExperimentRuns(client, experiment)
    if sweep is None:
        return overview(runs, sort)
    parent = runs.find(sweep)
    if run_kind(parent) == COMPARISON_KIND:
        return comparison_report(runs, parent, sort)
    return sweep_report(runs, parent, sort)


def sweep_report(runs: ExperimentRuns, sweep: Run, sort: str | None) -> list[Table]:
    """A sweep's trials; for a multi-objective sweep, its Pareto front after them."""
    objectives = logged_objectives(sweep.data.params.get("objectives", ""))
    trials = sweep_trials(runs, sweep, sort, also=[o.metric for o in objectives])
    if not objectives:
        return [trials]
    front = pareto_front(trials.frame, objectives)
    names = ", ".join(f"{o.metric} ({o.mode})" for o in objectives)
    columns = ["trial_id", "run_name", *(o.metric for o in objectives)]
    columns += [c for c in trials.frame.columns if "." in c]  # the searched params
    title = f"Pareto front over {names}: {len(front)} of {len(trials.frame)} trials"
    return [trials, Table(title, front[columns].reset_index(drop=True))]


def overview(runs: ExperimentRuns, sort: str | None) -> list[Table]:
    """Every sweep and comparison, then the best tuning trial of each method."""
    best = best_per_method(runs)
    if sort is not None:
        best = sort_by(best, sort, _metric_columns(best), _shared_mode(best["mode"]))
    return [
        Table(f"sweeps and comparisons in {runs.experiment!r}", parents_table(runs, runs.parents)),
        Table("best tuning trial per method", best),
    ]


def parents_table(runs: ExperimentRuns, parents: Iterable[Run]) -> pd.DataFrame:
    """One row per sweep or comparison run, oldest first."""
    rows = []
    for parent in sorted(parents, key=lambda run: run.info.start_time or 0):
        tags, params, metrics = parent.data.tags, parent.data.params, parent.data.metrics
        outer = runs.by_id.get(parent_id(parent))
        if run_kind(parent) == COMPARISON_KIND:
            trials = sum(len(runs.trials(sweep)) for sweep in runs.sweeps(parent))
        else:
            trials = len(runs.trials(parent))
        metric = params.get("metric", "")
        rows.append(
            {
                "kind": run_kind(parent),
                "name": parent.info.run_name,
                "sweep_id": sweep_id_of(parent),
                "started": _time(parent.info.start_time),
                "status": parent.info.status,
                "trials": trials,
                "searcher": params.get("searcher", ""),
                "metric": metric,
                # A sweep's best trial; an ablation's best cell (mean over seeds).
                "best": metrics.get(f"best_{metric}", metrics.get(f"best_cell_{metric}", math.nan)),
                "best_trial_id": tag_value(tags, BEST_TRIAL_TAG) or tag_value(tags, BEST_CELL_TAG),
                "parent": sweep_id_of(outer) if outer is not None else "",
            }
        )
    return pd.DataFrame(rows, columns=_PARENT_COLUMNS)


def best_per_method(runs: ExperimentRuns) -> pd.DataFrame:
    """Per method and sweep metric, the tuning trial with the best last-epoch value.

    Trials are judged by their own sweep's metric and mode, as the sweep itself judged them;
    methods tuned on different metrics get one row per metric, since their values do not
    compare. A failed trial is never best, as in :func:`margin_tune.pipeline.sweep.tuner.run_sweep`.
    """
    rows = []
    for sweep in runs.sweeps():
        metric, mode = sweep.data.params.get("metric"), sweep.data.params.get("mode", "max")
        for trial in runs.trials(sweep):
            tags, metrics = trial.data.tags, trial.data.metrics
            rows.append(
                {
                    "method": _method(tags),
                    "metric": metric,
                    "mode": mode,
                    "best": metrics.get(metric, math.nan) if metric else math.nan,
                    "trial_id": tags[TRIAL_ID_TAG],
                    "run_name": trial.info.run_name,
                    "sweep": sweep.info.run_name,
                    "sweep_id": sweep_id_of(sweep),
                    "failed": tag_value(tags, STATUS_TAG) == "failed",
                    **_shown_metrics(metrics),
                }
            )
    trials = pd.DataFrame(rows)
    if trials.empty:
        return pd.DataFrame(columns=["method", "metric", "mode", "best", "trials"])
    counts = trials.groupby(["method", "metric", "mode"]).size().rename("trials")
    scored = trials[~trials["failed"] & trials["best"].notna()]
    picks = [
        group["best"].idxmax() if mode == "max" else group["best"].idxmin()
        for (_, _, mode), group in scored.groupby(["method", "metric", "mode"])
    ]
    best = trials.loc[picks].drop(columns="failed").join(counts, on=["method", "metric", "mode"])
    fixed = ["method", "metric", "mode", "best", "trial_id", "run_name", "sweep", "sweep_id"]
    columns = [*fixed, "trials", *_ordered_metrics(set(best.columns) - {*fixed, "trials"})]
    return best[columns].sort_values(["method", "metric"]).reset_index(drop=True)


def sweep_trials(
    runs: ExperimentRuns, sweep: Run, sort: str | None, also: Iterable[str] = ()
) -> Table:
    """One row per trial: status, epochs, the searched params and last-epoch metrics (and the
    metrics ``also`` names: a multi-objective sweep's), sorted."""
    extra = frozenset(also)  # read once per trial below
    params = sweep.data.params
    metric, mode = params.get("metric", ""), params.get("mode", "max")
    trials = runs.trials(sweep)
    frame = pd.DataFrame(
        [
            {
                "trial_id": trial.data.tags[TRIAL_ID_TAG],
                "run_name": trial.info.run_name,
                "status": tag_value(trial.data.tags, STATUS_TAG),
                "epochs": _epochs(runs.client, trial, metric),
            }
            for trial in trials
        ],
        columns=["trial_id", "run_name", "status", "epochs"],
    )
    searched = _searched_params(trials)
    metrics = pd.DataFrame([_shown_metrics(trial.data.metrics, extra) for trial in trials])
    metrics = metrics[_ordered_metrics(metrics.columns)]
    frame = pd.concat([frame, searched, metrics], axis=1)
    key = sort or metric
    if sort is not None or key in frame:
        frame = sort_by(frame, key, list(metrics.columns), mode)
    title = (
        f"sweep {sweep.info.run_name} ({sweep_id_of(sweep)}, run {sweep.info.run_id}): "
        f"{len(trials)} trials, sorted by {key if key in frame else 'trial order'} ({mode})"
    )
    return Table(title, frame)


def comparison_report(runs: ExperimentRuns, comparison: Run, sort: str | None) -> list[Table]:
    """The final table per method over the re-training runs, then the comparison's sweeps."""
    finals = final_runs(runs, comparison)
    named = comparison.data.params.get("methods", "")
    methods = named.split(",") if named else sorted(finals["method"].unique())
    splits = int(comparison.data.params.get("splits", 1))
    table = summary_table(finals, methods, splits=splits)
    sweeps = runs.sweeps(comparison)
    if sort is not None:
        allowed = [f"{name}_mean" for name in metrics_of(finals.columns)]
        mode = _shared_mode(sweep.data.params.get("mode", "max") for sweep in sweeps)
        table = sort_by(table, sort, allowed, mode)
    title = (
        f"comparison {comparison.info.run_name} ({sweep_id_of(comparison)}): test metrics of "
        f"{len(finals)} final runs, mean ± 95% CI half-width per method"
    )
    return [Table(title, table), Table("its sweeps", parents_table(runs, sweeps))]


def final_runs(runs: ExperimentRuns, comparison: Run) -> pd.DataFrame:
    """The comparison's re-training runs, as
    :func:`~margin_tune.pipeline.analysis.tables.summary_table` takes them.

    As in :mod:`margin_tune.pipeline.jobs.compare.run`, a completed or collapsed run contributes
    its test metrics; a failed or unfinished one is counted and has none.
    """
    rows = []
    finals = [
        run for run in runs.children(comparison) if run.data.tags.get(STAGE_TAG) == FINAL_STAGE
    ]
    measured = metrics_of(name for run in finals for name in run.data.metrics)
    for run in finals:
        tags, metrics = run.data.tags, run.data.metrics
        status = tag_value(tags, STATUS_TAG)
        row: dict[str, Any] = {
            "split": int(
                tag_value(tags, SPLIT_TAG) or run.data.params.get("dataset.split_seed", "0")
            ),
            "method": _method(tags),
            "seed": int(tag_value(tags, SEED_TAG, "-1")),
            "status": status,
        }
        for name in measured:
            value = metrics.get(on_test(name), math.nan)
            row[on_test(name)] = value if status in MEASURED_STATUSES else math.nan
        rows.append(row)
    columns = ["split", "method", "seed", "status", *(on_test(name) for name in measured)]
    return pd.DataFrame(rows, columns=columns).sort_values(["split", "method", "seed"])


def sort_by(frame: pd.DataFrame, column: str, allowed: Iterable[str], mode: str) -> pd.DataFrame:
    """Best first by ``mode``, missing values last; an unknown column lists the allowed ones."""
    allowed = list(allowed)
    if column not in allowed:
        raise ConfigError("--sort", f"unknown metric {column!r}; available: {listed(allowed)}")
    ordered = frame.sort_values(column, ascending=mode == "min", na_position="last", kind="stable")
    return ordered.reset_index(drop=True)


def render(tables: list[Table], fmt: Format) -> str:
    """Tables as text; CSV of a single table is bare, so that it parses back as it is."""
    if fmt == "csv":
        if len(tables) == 1:
            return tables[0].frame.to_csv(index=False)
        return "\n".join(f"# {table.title}\n{table.frame.to_csv(index=False)}" for table in tables)
    if fmt == "markdown":
        return "\n".join(f"## {table.title}\n\n{to_markdown(table.frame)}\n" for table in tables)
    return "\n".join(f"{table.title}\n{_plain(table.frame)}\n" for table in tables)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured pipe table, numbers right-aligned.

    Written here because ``DataFrame.to_markdown`` needs ``tabulate``, which margin-tune does
    not depend on.
    """
    numeric = [pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes]
    lines = [
        _markdown_row(str(column) for column in frame.columns),
        _markdown_row("---:" if right else "---" for right in numeric),
    ]
    lines += [_markdown_row(map(_markdown_cell, row)) for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _markdown_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _markdown_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _plain(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    return frame.to_string(index=False, max_colwidth=40)


def _searched_params(trials: list[Run]) -> pd.DataFrame:
    """The params that differ across the trials: the ones the search chose, as numbers."""
    params = pd.DataFrame([trial.data.params for trial in trials])
    varied = [column for column in params if params[column].nunique(dropna=False) > 1]
    return params[varied].apply(_numeric_if_possible)


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """MLflow params are text; numbers read back as numbers sort and print as numbers."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else column


def _shown_metrics(metrics: dict[str, float], also: Iterable[str] = ()) -> dict[str, float]:
    """The metrics a report shows of a run, and those ``also`` names."""
    extra = set(also)
    return {name: value for name, value in metrics.items() if _is_shown(name) or name in extra}


def _is_shown(name: str) -> bool:
    """Validation metrics, and test metrics: only an ablation's or a re-training's have them."""
    return name.startswith((VALIDATION_PREFIX, TEST_PREFIX)) or name in _TRIAL_METRICS


def _ordered_metrics(names: Iterable[str]) -> list[str]:
    """Metrics in the trial loop's column order, any others after it by name."""
    position = {name: index for index, name in enumerate(EPOCH_COLUMNS)}
    return sorted(names, key=lambda name: (position.get(name, len(position)), name))


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    return ["best", *(column for column in frame.columns if _is_shown(column))]


def _epochs(client: MlflowClient, trial: Run, metric: str) -> int:
    """Epochs the trial got to: its latest ``epoch``, which the search already returned; a run
    logged before 0.2 has none, and then the last step of its sweep's metric (``step=epoch``;
    a test metric is logged once, at the last epoch) costs a history request."""
    if EPOCH in trial.data.metrics:
        return int(trial.data.metrics[EPOCH])
    if metric not in trial.data.metrics:
        return 0
    return max(point.step for point in client.get_metric_history(trial.info.run_id, metric))


def _shared_mode(modes: Iterable[str]) -> str:
    """The one mode the sweeps behind a table share, which sets the direction of ``--sort``."""
    distinct = set(modes)
    if len(distinct) > 1:
        raise ConfigError(
            "--sort", "the sweeps here disagree on max/min; sort one sweep with --sweep"
        )
    return distinct.pop() if distinct else "max"


def _method(tags: dict[str, str]) -> str:
    """A comparison's method; outside one, the trial's scheduler."""
    return tag_value(tags, METHOD_TAG) or tag_value(tags, SCHEDULER_TAG)


def _time(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(milliseconds / 1000))
