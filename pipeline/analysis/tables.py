"""The comparison's tables from its re-training runs: pure pandas, no Ray, no torch.

``compare`` writes them at the end of a run and ``report`` rebuilds them from MLflow, so both read
one definition of the summary and the paired test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from margin_tune.pipeline.analysis.statistics import (
    holm_bonferroni,
    interval_table,
    paired_comparison,
    split_unit_values,
)
from margin_tune.trainables.metric_names import metrics_of, on_test

#: The test metrics of every re-training, as ``test_<name>`` columns.


def summary_table(
    runs: pd.DataFrame,
    methods: list[str],
    *,
    tuning: pd.DataFrame | None = None,
    splits: int = 1,
) -> pd.DataFrame:
    """Per method: mean, CI half-width and n of each test metric over the unit of replication.

    With one split the unit is the re-training seed; with several, each split's seeds are
    averaged first and the splits are the unit, so the interval covers the class split and the
    tuning outcome as well as the seed. Counts of runs, collapsed and failed runs are over all
    runs; ``tuning`` adds the realised budget and the chosen trials' record.
    """
    columns = {name: on_test(name) for name in metrics_of(runs.columns)}
    if runs.empty:
        runs = pd.DataFrame(columns=["split", "method", "seed", "status", *columns.values()])
    counts = interval_table(runs, "method", methods, {})
    if splits > 1:
        per_split = _per_split(runs, list(columns.values()))
        intervals = interval_table(
            per_split.assign(status="completed"), "method", methods, columns
        ).drop(columns=["runs", "collapsed", "failed"])
    else:
        intervals = interval_table(runs, "method", methods, columns).drop(
            columns=["runs", "collapsed", "failed"]
        )
    table = counts.merge(intervals, on="method", how="left")
    table["unit"] = "split" if splits > 1 else "seed"
    if tuning is not None and not tuning.empty:
        record = (
            tuning.groupby("method", sort=False)
            .agg(
                splits_without_winner=("chosen_trial", lambda c: int(c.isna().sum())),
                chosen_trials=("chosen_trial", _joined),
                chosen_epochs=("chosen_epochs", _joined),
                tuning_score=("tuning_score", "mean"),
                retrained_val=("retrained_val", "mean"),
                trials=("trials", "sum"),
                trial_epochs=("trial_epochs", "sum"),
                searcher=("searcher", "first"),
                dimensions=("dimensions", "first"),
            )
            .reset_index()
        )
        table = table.merge(record, on="method", how="left")
    return table


def _joined(values: pd.Series) -> str:
    """One text per split, e.g. the chosen trials of each: ``a1b2;c3d4``."""
    return ";".join(str(int(v)) if isinstance(v, float) else str(v) for v in values.dropna())


def _per_split(runs: pd.DataFrame, values: list[str]) -> pd.DataFrame:
    """One row per (method, split): each value averaged over that split's seeds."""
    frames = [split_unit_values(runs, value, by="method", unit="split") for value in values]
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on=["method", "split"], how="outer")
    return merged


def paired_table(
    runs: pd.DataFrame,
    schedulers: list[str],
    baselines: tuple[str, ...],
    *,
    primary: str,
    splits: int = 1,
) -> pd.DataFrame:
    """For each baseline, scheduler and test metric: the paired difference scheduler − baseline.

    Pairs are re-training seeds (one split) or splits (several; seeds averaged within each).
    Only complete pairs enter a test. The ``primary`` metric's p-values are Holm-Bonferroni
    adjusted over every scheduler × baseline comparison (``holm_p``); the other metrics are
    labelled secondary and left unadjusted. A constant difference has no test: its p-values are
    NaN and ``constant`` is true.
    """
    unit = "split" if splits > 1 else "seed"
    rows = []
    for name in metrics_of(runs.columns):
        column = on_test(name)
        if runs.empty:
            continue
        units = split_unit_values(runs, column, by="method", unit="split") if splits > 1 else runs
        pivot = units.pivot_table(index=unit, columns="method", values=column, dropna=False)
        for baseline in baselines:
            for scheduler in schedulers:
                if scheduler not in pivot or baseline not in pivot:
                    continue
                result = paired_comparison(pivot[scheduler].to_numpy(), pivot[baseline].to_numpy())
                rows.append(
                    {
                        "scheduler": scheduler,
                        "baseline": baseline,
                        "metric": name,
                        "role": "primary" if name == primary else "secondary",
                        "unit": unit,
                        "mean_difference": result.difference.mean,
                        "ci95": result.difference.half_width,
                        "pairs": result.difference.n,
                        "constant": result.constant,
                        "t_test_p": result.t_pvalue,
                        "holm_p": np.nan,
                        "wilcoxon_p": result.wilcoxon_pvalue,
                    }
                )
    table = pd.DataFrame(rows)
    if not table.empty:
        is_primary = table["role"] == "primary"
        table.loc[is_primary, "holm_p"] = holm_bonferroni(
            table.loc[is_primary, "t_test_p"].to_numpy()
        )
        # Primary comparisons first, then the secondary metrics.
        table = table.sort_values("role", kind="stable", key=lambda c: c != "primary")
        table = table.reset_index(drop=True)
    return table


def mean_ci(mean: float, half_width: float, *, signed: bool = False) -> str:
    """A table cell: ``0.9123 ± 0.0100``, signed for a difference, ``–`` for no value."""
    if pd.isna(mean):
        return "–"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if pd.isna(half_width) else f"{text} ± {half_width:.4f}"


def score(value: float) -> str:
    """A table cell for one score: ``0.9123``, ``–`` for none."""
    return "–" if pd.isna(value) else f"{value:.4f}"


def p_value(value: float) -> str:
    """A table cell for a p-value: three significant digits, ``–`` for none."""
    return "–" if pd.isna(value) else f"{value:.3g}"
