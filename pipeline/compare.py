"""``margin-tune compare``: tune every method with the same budget, re-train the winners over
seeds on test classes, and write the table a paper would print.

1. Each method's space is swept (same trials, epochs, searcher, seed, class split).
2. Each method's best trial (highest validation metric at its last completed epoch) is re-trained
   with training seeds 0..n−1 and evaluated on the test classes.
3. Means with 95% CIs per method, and for each baseline the paired difference to each scheduler.

Resumable at any point (``margin-tune resume``): the comparison's run and each sweep's are found
by ids fixed before the start, each sweep continues from its own Ray Tune experiment (a finished
one runs no trial again), and the re-trainings are one Tune experiment too, so finished ones are
kept and unfinished ones continue from their last checkpoint, each in the MLflow run it opened.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.compare_spec import CompareSpec
from pipeline.grid_trials import GridPointConfig, completed_metrics, run_grid_trials
from pipeline.outputs import write_yaml
from pipeline.search_space import apply_overrides
from pipeline.statistics import interval_table, paired_comparison
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
from trainables.data import Dataset

TEST_METRICS = ("roc_auc", "eer", "tar_at_far_1e-3", "recall_at_1", "map_at_r")
FINAL_DIR = "final"
#: Each method's chosen config, written before the re-trainings (``margin-tune sync`` reads it).
BEST_CONFIGS_FILE = "best_configs.yaml"
#: Tags of every re-training run, beside its ``method``.
FINAL_TAGS = {"margin_tune.stage": "final"}


@dataclass
class CompareResult:
    """Per-run final results, the summary table and the paired comparisons."""

    runs: pd.DataFrame
    table: pd.DataFrame
    comparisons: pd.DataFrame
    sweeps: dict[str, SweepResult]
    best_configs: dict[str, Config]
    comparison_run_id: str
    final_histories: dict[str, pd.DataFrame]
    """Per method, the per-epoch history of its seed-0 re-training run."""


def run_compare(
    spec: CompareSpec,
    options: SweepOptions,
    out: Path,
    tracker: Tracker,
    *,
    comparison_id: str,
    sweep_ids: Mapping[str, str],
) -> CompareResult:
    """Run, or continue, inside an active Ray session; everything nests under one parent run.

    ``options.trials`` is each method's tuning budget (the same for all, baselines included).
    ``comparison_id`` and ``sweep_ids`` (method → id) name the comparison's and the sweeps'
    MLflow runs, so a resumed comparison finds the runs it started.
    """
    trials = options.trials
    comparison_run = tracker.sweep_run(
        name=f"compare {' vs '.join(spec.methods)}",
        sweep_id=comparison_id,
        params={
            "methods": ",".join(spec.methods),
            "baselines": ",".join(spec.baselines),
            "trials_per_method": trials,
            "epochs": spec.base.train.epochs,
            "searcher": options.searcher,
            "seeds": spec.seeds,
            "metric": spec.metric,
            "split_seed": spec.base.dataset.split_seed,
        },
        tags={
            "margin_tune.sweep_id": comparison_id,
            "margin_tune.kind": "comparison",
            "git_commit": git_commit(),
            "dataset": spec.base.dataset.name,
        },
    )
    started = time.perf_counter()
    sweeps: dict[str, SweepResult] = {}
    dataset: Dataset | None = None
    for method, space in spec.spaces.items():
        plan = plan_sweep(
            method, spec.base, space, options, out / "sweeps" / method, sweep_id=sweep_ids[method]
        )
        dataset = plan.dataset
        sweeps[method] = run_sweep(plan, tracker, parent_run_id=comparison_run)
        record_sweep_outputs(sweeps[method], tracker)
    assert dataset is not None
    best_configs = {method: _best_config(spec.base, result) for method, result in sweeps.items()}
    write_yaml(out / BEST_CONFIGS_FILE, {m: config.to_dict() for m, config in best_configs.items()})
    runs, histories = _run_final(spec, options, out, tracker, comparison_run, best_configs, dataset)
    table = summary_table(runs, spec.methods)
    comparisons = paired_table(runs, spec.schedulers, spec.baselines)
    tracker.log_metrics(comparison_run, {"wall_seconds": time.perf_counter() - started})
    return CompareResult(runs, table, comparisons, sweeps, best_configs, comparison_run, histories)


def _best_config(base: Config, result: SweepResult) -> Config:
    if not result.best:
        raise RuntimeError(f"sweep {result.plan.name!r} finished no trial; nothing to compare")
    searched = {
        key.removeprefix("config."): value
        for key, value in result.best.items()
        if key.startswith("config.")
    }
    return apply_overrides(base, {k: v for k, v in searched.items() if v == v})


def _run_final(
    spec: CompareSpec,
    options: SweepOptions,
    out: Path,
    tracker: Tracker,
    comparison_run: str,
    best_configs: dict[str, Config],
    dataset: Dataset,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    points = GridPointConfig({method: config.to_dict() for method, config in best_configs.items()})
    synced = run_grid_trials(
        run_final_trial,
        points,
        seeds=spec.seeds,
        dataset=dataset,
        options=options,
        directory=out / FINAL_DIR,
        tracker=tracker,
        parent_run_id=comparison_run,
        tags=FINAL_TAGS,
    )
    rows = []
    histories: dict[str, pd.DataFrame] = {}
    for trial in synced:
        params = trial.result.config or {}
        if params.get("seed") == 0 and trial.history is not None:
            histories[str(params["method"])] = trial.history
        rows.append(
            {
                "method": params.get("method"),
                "seed": params.get("seed"),
                "status": trial.status,
                TRIAL_ID_TAG: trial.trial_id,
                **completed_metrics(
                    trial.status, trial.result.metrics or {}, (f"test_{n}" for n in TEST_METRICS)
                ),
            }
        )
    runs = pd.DataFrame(rows).sort_values(["method", "seed"]).reset_index(drop=True)
    return runs, histories


def summary_table(runs: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per method: mean, CI half-width and n for each test metric, plus collapse/failure counts."""
    return interval_table(runs, "method", methods, {name: f"test_{name}" for name in TEST_METRICS})


def paired_table(
    runs: pd.DataFrame, schedulers: list[str], baselines: tuple[str, ...]
) -> pd.DataFrame:
    """For each baseline and scheduler: mean paired difference (scheduler − baseline) by seed."""
    rows = []
    for baseline in baselines:
        for scheduler in schedulers:
            for name in TEST_METRICS:
                column = f"test_{name}"
                pivot = runs.pivot_table(
                    index="seed", columns="method", values=column, dropna=False
                )
                if scheduler not in pivot or baseline not in pivot:
                    continue
                result = paired_comparison(pivot[scheduler].to_numpy(), pivot[baseline].to_numpy())
                rows.append(
                    {
                        "scheduler": scheduler,
                        "baseline": baseline,
                        "metric": name,
                        "mean_difference": result.difference.mean,
                        "ci95": result.difference.half_width,
                        "pairs": result.difference.n,
                        "t_test_p": result.t_pvalue,
                        "wilcoxon_p": result.wilcoxon_pvalue,
                    }
                )
    return pd.DataFrame(rows)
