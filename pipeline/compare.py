"""``margin-tune compare``: tune every method with the same budget, re-train the winners over
seeds on test classes, and write the table a paper would print.

The protocol, repeated on each class split (``compare.splits``, split seeds ``split_seed``,
``split_seed + 1``, …), each split tuned on its own:

1. Each method's space is swept on the split's validation classes (same trials, epochs,
   searcher and tuning seed for every method; the searcher seed moves with the split).
2. Each method's winner is its best trial among those that trained the whole epoch budget
   (:func:`pipeline.sweep.best_trial`). A method without such a trial has no winner on that
   split: the table says so, nothing replaces it.
3. Each winner is re-trained with the re-training seeds, which no tuning trial used
   (:func:`pipeline.compare_spec.retraining_seeds`), and evaluated on the split's test classes.
   A collapsed re-training is evaluated at the epoch it stopped at and counted; only a failed
   one has no metric.
4. Per method the mean with a 95% CI, and for each baseline the paired difference to each
   scheduler. With several splits the unit of replication is the split (seeds averaged within
   it), so the interval covers the class split and the tuning outcome; with one split it is the
   training seed, and the result is conditional on that split and that tuning run. The paired
   tests of the primary metric are Holm-Bonferroni corrected over every scheduler × baseline.

Resumable at any point (``margin-tune resume``): the comparison's run and each sweep's are found
by ids fixed before the start, each sweep continues from its own Ray Tune experiment (a finished
one runs no trial again), and each split's re-trainings are one Tune experiment too, so finished
ones are kept and unfinished ones continue from their last checkpoint, each in the MLflow run it
opened.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.compare_spec import CompareSpec
from pipeline.grid_trials import GridPointConfig, completed_metrics, run_grid_trials
from pipeline.outputs import write_yaml
from pipeline.search_space import apply_overrides
from pipeline.statistics import (
    holm_bonferroni,
    interval_table,
    paired_comparison,
    split_unit_values,
)
from pipeline.sweep import (
    SweepOptions,
    SweepResult,
    git_commit,
    plan_sweep,
    record_sweep_outputs,
    run_sweep,
)
from pipeline.tracking import Tracker
from pipeline.trainable import run_final_trial
from pipeline.tune_callback import TRIAL_ID_TAG
from trainables.config import Config
from trainables.data import Dataset, load_dataset
from trainables.errors import ConfigError
from trainables.metrics.verification import COUNT_KEYS

TEST_METRICS = ("roc_auc", "eer", "tar_at_far_1e-3", "recall_at_1", "map_at_r")
#: Counts behind the verification metrics of each test evaluation: pairs scored, and false
#: accepts at the FAR = 1e-3 operating point (what TAR@FAR=1e-3 rests on).
TEST_COUNTS = COUNT_KEYS
#: Where each split's directories live: ``splits/<split seed>/sweeps/<method>`` and ``…/final``.
SPLITS_DIR = "splits"
SWEEPS_DIR = "sweeps"
FINAL_DIR = "final"
#: Each method's chosen config on a split, written before its re-trainings (``sync`` reads it).
BEST_CONFIGS_FILE = "best_configs.yaml"
#: Tags of every re-training run, beside its ``split`` and ``method``.
FINAL_TAGS = {"margin_tune.stage": "final"}
#: The tag of a sweep run with the class split it tuned on.
SPLIT_TAG = "split"


def split_dir(out: Path, split: int) -> Path:
    return out / SPLITS_DIR / str(split)


def split_config(base: Config, split: int) -> Config:
    """The base config on class split ``split``."""
    return dataclasses.replace(base, dataset=dataclasses.replace(base.dataset, split_seed=split))


def check_split_layout(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse a comparison written before the per-split layout (one flat ``sweeps/`` folder)."""
    if not all(isinstance(ids, dict) for ids in manifest["sweep_ids"].values()):
        raise ConfigError(
            "DIR",
            f"{out} was written by a margin-tune before comparisons ran per class split "
            "(splits/<seed>/...); it cannot be resumed or synced by this version",
        )


@dataclass
class CompareResult:
    """Per-run final results, the tables and what each sweep chose.

    ``runs``: one row per (split, method, re-training seed). ``table``: per method, mean, CI and
    n of every test metric over the unit of replication (:attr:`unit`), with the tuning record.
    ``comparisons``: scheduler − baseline per metric, with Holm-adjusted p for the primary one.
    ``tuning``: one row per (split, method): the chosen trial, its epochs and tuning score beside
    the re-trainings' validation mean, and the budget the sweep spent.
    """

    runs: pd.DataFrame
    table: pd.DataFrame
    comparisons: pd.DataFrame
    tuning: pd.DataFrame
    sweeps: dict[tuple[int, str], SweepResult]
    best_configs: dict[int, dict[str, Config]]
    comparison_run_id: str
    final_histories: dict[str, pd.DataFrame]
    """Per method, the per-epoch history of its first re-training on the first split."""

    @property
    def methods_without_winner(self) -> list[str]:
        """Methods that, on some split, had no trial that trained the whole budget."""
        missing = self.tuning[self.tuning["chosen_trial"].isna()]
        return list(dict.fromkeys(missing["method"]))


def run_compare(
    spec: CompareSpec,
    options: SweepOptions,
    out: Path,
    tracker: Tracker,
    *,
    comparison_id: str,
    sweep_ids: Mapping[str, Mapping[str, str]],
) -> CompareResult:
    """Run, or continue, inside an active Ray session; everything nests under one parent run.

    ``options.trials`` is each method's tuning budget per split (the same for all, baselines
    included). ``comparison_id`` and ``sweep_ids`` (split seed as text → method → id) name the
    comparison's and the sweeps' MLflow runs, so a resumed comparison finds the runs it started.
    """
    comparison_run = tracker.sweep_run(
        name=f"compare {' vs '.join(spec.methods)}",
        sweep_id=comparison_id,
        params={
            "methods": ",".join(spec.methods),
            "baselines": ",".join(spec.baselines),
            "trials_per_method": options.trials,
            "epochs": spec.base.train.epochs,
            "searcher": options.searcher,
            "seeds": spec.seeds,
            "metric": spec.metric,
            "mode": spec.mode,
            "splits": spec.splits,
            "split_seeds": ",".join(map(str, spec.split_seeds)),
            "tuning_seeds": ",".join(map(str, spec.tuning_seeds)),
            "retraining_seeds": ",".join(map(str, spec.final_seeds)),
        },
        tags={
            "margin_tune.sweep_id": comparison_id,
            "margin_tune.kind": "comparison",
            "git_commit": git_commit(),
            "dataset": spec.base.dataset.name,
        },
    )
    started = time.perf_counter()
    sweeps: dict[tuple[int, str], SweepResult] = {}
    best_configs: dict[int, dict[str, Config]] = {}
    run_frames, tuning_rows = [], []
    histories: dict[str, pd.DataFrame] = {}
    dataset = load_dataset(spec.base.dataset)  # the same samples on every split
    for index, split in enumerate(spec.split_seeds):
        base = split_config(spec.base, split)
        directory = split_dir(out, split)
        # Each split is tuned on its own: the searcher's seed moves with it.
        split_options = dataclasses.replace(options, seed=options.seed + index)
        for method, space in spec.spaces.items():
            plan = plan_sweep(
                method if spec.splits == 1 else f"{method} split {split}",
                base,
                space,
                split_options,
                directory / SWEEPS_DIR / method,
                sweep_id=sweep_ids[str(split)][method],
                dataset=dataset,
            )
            sweeps[split, method] = run_sweep(
                plan,
                tracker,
                parent_run_id=comparison_run,
                tags={SPLIT_TAG: str(split), "method": method},
            )
            record_sweep_outputs(sweeps[split, method], tracker)
        chosen = {
            method: _best_config(base, sweeps[split, method])
            for method in spec.methods
            if sweeps[split, method].best
        }
        best_configs[split] = chosen
        write_yaml(directory / BEST_CONFIGS_FILE, {m: c.to_dict() for m, c in chosen.items()})
        runs, split_histories = _run_final(
            spec, split, options, directory, tracker, comparison_run, chosen, dataset
        )
        run_frames.append(runs)
        for method, history in split_histories.items():
            histories.setdefault(method, history)
        tuning_rows += [
            tuning_row(spec, split, method, sweeps[split, method], runs) for method in spec.methods
        ]
    runs = pd.concat(run_frames, ignore_index=True) if run_frames else pd.DataFrame()
    tuning = pd.DataFrame(tuning_rows)
    table = summary_table(runs, spec.methods, tuning=tuning, splits=spec.splits)
    comparisons = paired_table(
        runs, spec.schedulers, spec.baselines, primary=spec.primary, splits=spec.splits
    )
    tracker.log_metrics(comparison_run, {"wall_seconds": time.perf_counter() - started})
    return CompareResult(
        runs, table, comparisons, tuning, sweeps, best_configs, comparison_run, histories
    )


def _best_config(base: Config, result: SweepResult) -> Config:
    searched = {
        key.removeprefix("config."): value
        for key, value in result.best.items()
        if key.startswith("config.")
    }
    return apply_overrides(base, {k: v for k, v in searched.items() if v == v})


def final_columns(spec: CompareSpec) -> list[str]:
    """What each re-training contributes: the primary validation metric at its last epoch, then
    every test metric and the verification counts."""
    return [
        spec.metric,
        *(f"test_{name}" for name in TEST_METRICS),
        *(f"test_{name}" for name in TEST_COUNTS),
    ]


def _run_final(
    spec: CompareSpec,
    split: int,
    options: SweepOptions,
    directory: Path,
    tracker: Tracker,
    comparison_run: str,
    configs: dict[str, Config],
    dataset: Dataset,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Re-train each chosen config of one split with every re-training seed."""
    columns = ["split", "method", "seed", "status", TRIAL_ID_TAG, *final_columns(spec)]
    if not configs:
        return pd.DataFrame(columns=columns), {}
    points = GridPointConfig(
        {method: config.to_dict() for method, config in configs.items()}, fixed={"split": split}
    )
    synced = run_grid_trials(
        run_final_trial,
        points,
        seeds=spec.final_seeds,
        dataset=dataset,
        options=options,
        directory=directory / FINAL_DIR,
        tracker=tracker,
        parent_run_id=comparison_run,
        tags=FINAL_TAGS,
    )
    rows = []
    histories: dict[str, pd.DataFrame] = {}
    for trial in synced:
        params = trial.result.config or {}
        if params.get("seed") == spec.final_seeds[0] and trial.history is not None:
            histories[str(params["method"])] = trial.history
        rows.append(
            {
                "split": split,
                "method": params.get("method"),
                "seed": params.get("seed"),
                "status": trial.status,
                TRIAL_ID_TAG: trial.trial_id,
                **completed_metrics(trial.status, trial.result.metrics or {}, final_columns(spec)),
            }
        )
    runs = pd.DataFrame(rows, columns=columns).sort_values(["method", "seed"])
    return runs.reset_index(drop=True), histories


def tuning_row(
    spec: CompareSpec, split: int, method: str, sweep: SweepResult, runs: pd.DataFrame
) -> dict[str, Any]:
    """What one method's sweep on one split chose and spent, beside its re-trainings' mean."""
    best = sweep.best
    mine = runs[runs["method"] == method] if not runs.empty else runs
    retrained = mine[spec.metric].mean() if not mine.empty else np.nan
    return {
        "split": split,
        "method": method,
        "chosen_trial": best.get(TRIAL_ID_TAG) if best else None,
        "chosen_run_id": best.get("run_id") if best else None,
        "chosen_epochs": best.get("epochs") if best else None,
        "tuning_score": best.get(spec.metric, np.nan) if best else np.nan,
        "retrained_val": retrained,
        **sweep.budget,
    }


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
    columns = {name: f"test_{name}" for name in TEST_METRICS}
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
    for name in TEST_METRICS:
        column = f"test_{name}"
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
