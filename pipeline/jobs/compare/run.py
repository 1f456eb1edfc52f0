"""``margin-tune compare``: tune every method with the same budget, re-train the winners over
seeds on test classes, and write the table a paper would print.

The protocol, repeated on each class split (``compare.splits``, split seeds ``split_seed``,
``split_seed + 1``, …), each split tuned on its own:

1. Each method's space is swept on the split's validation classes (same trials, epochs,
   searcher and tuning seed for every method; the searcher seed moves with the split).
2. Each method's winner is its best trial among those that trained the whole epoch budget
   (:func:`margin_tune.pipeline.sweep.tuner.best_trial`). A method without such a trial has no
   winner on
   that
   split: the table says so, nothing replaces it.
3. Each winner is re-trained with the re-training seeds, which no tuning trial used
   (:func:`margin_tune.pipeline.jobs.compare.spec.retraining_seeds`), and evaluated on the split's
   test
   classes.
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

from margin_tune.pipeline.analysis.tables import paired_table, summary_table
from margin_tune.pipeline.jobs.compare.plan import method_options, split_config
from margin_tune.pipeline.jobs.compare.registry import Registration
from margin_tune.pipeline.jobs.compare.spec import CompareSpec
from margin_tune.pipeline.outputs.folders import write_yaml
from margin_tune.pipeline.sweep.grid_trials import (
    GridPointConfig,
    completed_metrics,
    run_grid_trials,
)
from margin_tune.pipeline.sweep.inputs import SCORED_CONTEXTS, DatasetInputs
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep
from margin_tune.pipeline.sweep.trainable import checkpoint_views, run_final_trial
from margin_tune.pipeline.sweep.tuner import SweepResult, record_sweep_outputs, run_sweep
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    COMPARISON_KIND,
    DATASET_TAG,
    FINAL_TAGS,
    KIND_TAG,
    MEASURED_STATUSES,
    METHOD_TAG,
    SPLIT_TAG,
    SWEEP_ID_TAG,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples, load_dataset, recall_ks
from margin_tune.trainables.metric_names import on_test, test_columns
from margin_tune.trainables.metrics.views import EmbeddingViews

#: Where each split's directories live: ``splits/<split seed>/sweeps/<method>`` and ``…/final``.
SPLITS_DIR = "splits"
SWEEPS_DIR = "sweeps"
FINAL_DIR = "final"
#: Each method's chosen config on a split, written before its re-trainings (``sync`` reads it).
BEST_CONFIGS_FILE = "best_configs.yaml"


def split_dir(out: Path, split: int) -> Path:
    return out / SPLITS_DIR / str(split)


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
    views: dict[int, dict[tuple[str, int], EmbeddingViews]] = dataclasses.field(
        default_factory=dict
    )
    """Per split, the test ROC curve and map of each measured re-training, by (method, seed)."""
    class_names: tuple[str, ...] = ()
    """The dataset's class names, what the maps' legends call the classes."""
    out: Path | None = None
    """The output directory: tables, plots, each sweep's and re-training's files."""
    spec: CompareSpec | None = None
    """The comparison that ran."""
    registered: Registration | None = None
    """What ``register_model`` registered in the MLflow Model Registry, if it was asked."""

    @property
    def ok(self) -> bool:
        """Every method had a winner on every split (else the CLI exits 1)."""
        return not self.methods_without_winner

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
            **({"population_methods": ",".join(spec.populations)} if spec.populations else {}),
        },
        tags={
            SWEEP_ID_TAG: comparison_id,
            KIND_TAG: COMPARISON_KIND,
            DATASET_TAG: spec.base.dataset.name,
        },
    )
    started = time.perf_counter()
    sweeps: dict[tuple[int, str], SweepResult] = {}
    best_configs: dict[int, dict[str, Config]] = {}
    run_frames, tuning_rows = [], []
    histories: dict[str, pd.DataFrame] = {}
    views: dict[int, dict[tuple[str, int], EmbeddingViews]] = {}
    dataset = load_dataset(spec.base.dataset)  # the same samples on every split
    # The comparison spans every split: its run lists each split's parts.
    splits = [split_config(spec.base, split).dataset for split in spec.split_seeds]
    tracker.log_inputs(
        comparison_run, DatasetInputs.build(dataset, splits, SCORED_CONTEXTS).every_record()
    )
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
                method_options(spec, method, split_options),
                directory / SWEEPS_DIR / method,
                sweep_id=sweep_ids[str(split)][method],
                dataset=dataset,
            )
            sweeps[split, method] = run_sweep(
                plan,
                tracker,
                parent_run_id=comparison_run,
                tags={SPLIT_TAG: str(split), METHOD_TAG: method},
            )
            record_sweep_outputs(sweeps[split, method], tracker)
        chosen = {
            method: config
            for method in spec.methods
            if (config := sweeps[split, method].best_config) is not None
        }
        best_configs[split] = chosen
        write_yaml(directory / BEST_CONFIGS_FILE, {m: c.to_dict() for m, c in chosen.items()})
        views[split] = {}
        runs, split_histories = _run_final(
            spec, split, options, directory, tracker, comparison_run, chosen, dataset, views[split]
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
        runs,
        table,
        comparisons,
        tuning,
        sweeps,
        best_configs,
        comparison_run,
        histories,
        views,
        dataset.class_names,
    )


def final_columns(spec: CompareSpec) -> list[str]:
    """What each re-training contributes: the primary validation metric at its last epoch, then
    every test metric and the verification counts."""
    return [
        spec.metric,
        *test_columns(recall_ks(spec.base)),
    ]


def _run_final(
    spec: CompareSpec,
    split: int,
    options: SweepOptions,
    directory: Path,
    tracker: Tracker,
    comparison_run: str,
    configs: dict[str, Config],
    dataset: Samples,
    views: dict[tuple[str, int], EmbeddingViews],
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Re-train each chosen config of one split with every re-training seed; each measured
    run's test views go into ``views`` by (method, seed)."""
    columns = ["split", "method", "seed", "status", TRIAL_ID_TAG, *final_columns(spec), "run_id"]
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
        title="re-training" if spec.splits == 1 else f"re-training split {split}",
        metric=on_test(spec.primary),
        log_models=True,
        views=True,
    )
    rows = []
    histories: dict[str, pd.DataFrame] = {}
    for trial in synced:
        params = trial.result.config or {}
        if params.get("seed") == spec.final_seeds[0] and trial.history is not None:
            histories[str(params["method"])] = trial.history
        if trial.status in MEASURED_STATUSES:
            found = checkpoint_views(trial.result.checkpoint)
            if found is not None:
                views[str(params["method"]), int(params["seed"])] = found
        rows.append(
            {
                "split": split,
                "method": params.get("method"),
                "seed": params.get("seed"),
                "status": trial.status,
                TRIAL_ID_TAG: trial.trial_id,
                **completed_metrics(trial.status, trial.result.metrics or {}, final_columns(spec)),
                "run_id": trial.run_id,
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
