"""P6: the sweep machinery's cost per trial, with trials that train nothing.

Ours is ``run_sweep`` itself (the code path of ``margin-tune tune``: random searcher, MLflow
child run per trial on sqlite, checkpoint pruning, ``result.json`` only, our snapshot period,
the sync at the end) with its trial function swapped for one that reports one epoch and
returns. The reference is a bare ``Tuner`` with Ray's defaults running the same no-op trials.
Both run inside one Ray session started beforehand, at concurrency 2, so Ray's start-up is
timed apart; the driver's own CPU time is measured as well, since on 2 cores it is taken from
the trials.

Ray's own figure: its release test ``tune_tests/scalability_tests/workloads/
test_bookkeeping_overhead.py`` runs 10,000 trials of 1 s on 16 CPUs within 800 s against a
theoretical 625 s, i.e. it allows (800 − 625) s / 10,000 = 17.5 ms of wall time per trial at
16 trials at once, or 16 × 800 s / 10,000 − 1 s = 0.28 s of slot time per trial.
Run: ``python -m bench.p6_bookkeeping [--quick]``.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from ray import cloudpickle, tune

from bench.common import Figure
from bench.tables import markdown_table
from margin_tune.pipeline.runtime.console import verbosity
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.tuner import SweepOptions, plan_sweep, ray_session, run_sweep
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.parts import load_config

TRIALS = 500
CONCURRENCY = 2
# Ray's release test, as its module docstring states it.
RAY_TRIALS, RAY_TRIAL_S, RAY_CPUS, RAY_LIMIT_S = 10_000, 1.0, 16, 800.0
RAY_IDEAL_S = RAY_TRIALS * RAY_TRIAL_S / RAY_CPUS
RAY_WALL_MS_PER_TRIAL = (RAY_LIMIT_S - RAY_IDEAL_S) * 1e3 / RAY_TRIALS
RAY_SLOT_S_PER_TRIAL = RAY_CPUS * RAY_LIMIT_S / RAY_TRIALS - RAY_TRIAL_S

# Ray's workers cannot import ``bench`` (not an installed package): ship these functions whole.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def no_training(params: dict[str, Any], **_: Any) -> None:
    """A trial of ``run_sweep`` that reports one epoch, as a trained one would, and ends."""
    tune.report(
        {
            "epoch": 1,
            "val_roc_auc": 0.5,
            "val_map_at_r": 0.5,
            "margin": params["margin.initial_margin"],
        }
    )


def bare_no_training(params: dict[str, Any]) -> None:
    tune.report({"epoch": 1, "val_roc_auc": 0.5, "val_map_at_r": 0.5})


def _timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, this process's CPU seconds, and the result of ``run``."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return wall, usage.ru_utime + usage.ru_stime - cpu, result


def ours(trials: int, scratch: Path, name: str, storage: str | None) -> tuple[float, float, int]:
    """Wall and driver-CPU seconds of ``run_sweep``'s fit and summary; MLflow runs made.

    The progress lines are written (to /dev/null) as a sweep writes them to a pipe, so their
    cost is in the figure; ``storage``: the Optuna study's RDB, as ``tune`` puts it in the
    output directory by default, or None for a study in memory.
    """
    base = load_config(overrides=["train.epochs=1"])
    space = load_space("constant", base)
    options = SweepOptions(
        trials=trials,
        concurrency=CONCURRENCY,
        searcher="random",
        early_stopping=False,
        storage=storage,
    )
    plan = plan_sweep("bookkeeping", base, space, options, scratch / name)
    with (
        open(os.devnull, "w") as sink,
        verbosity("normal", stream=sink),
        Tracker(f"sqlite:///{scratch / name}.db", "bench-p6") as tracker,
    ):
        wall, cpu, result = _timed(lambda: run_sweep(plan, tracker, function=no_training))
        runs = len(tracker.child_runs(result.parent_run_id))
    return wall, cpu, runs


def bare(trials: int, scratch: Path) -> tuple[float, float]:
    tuner = tune.Tuner(
        bare_no_training,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            num_samples=trials, max_concurrent_trials=CONCURRENCY, reuse_actors=True
        ),
        run_config=tune.RunConfig(storage_path=str(scratch / "bare"), name="bare", verbose=0),
    )
    wall, cpu, _ = _timed(tuner.fit)
    return wall, cpu


def measure(quick: bool) -> Figure:
    trials = 50 if quick else TRIALS
    with tempfile.TemporaryDirectory(prefix="bench-p6-") as directory:
        scratch = Path(directory)
        started = time.perf_counter()
        with ray_session(None):
            startup = time.perf_counter() - started
            bare_wall, bare_cpu = bare(trials, scratch)
            ours_wall, ours_cpu, runs = ours(trials, scratch, "memory", None)
            rdb = f"sqlite:///{scratch / 'optuna.db'}"
            rdb_wall, rdb_cpu, rdb_runs = ours(trials, scratch, "rdb", rdb)
    table = pd.DataFrame(
        [
            {"sweep": "bare Tuner (Ray's defaults)", "wall s": bare_wall, "driver CPU s": bare_cpu},
            {
                "sweep": "ours, Optuna study in memory (--address)",
                "wall s": ours_wall,
                "driver CPU s": ours_cpu,
            },
            {
                "sweep": "ours, Optuna study in DIR/optuna.db (the default)",
                "wall s": rdb_wall,
                "driver CPU s": rdb_cpu,
            },
        ]
    )
    table["wall ms/trial"] = table["wall s"] * 1e3 / trials
    table["driver CPU ms/trial"] = table["driver CPU s"] * 1e3 / trials
    table["slot s/trial"] = table["wall s"] * CONCURRENCY / trials
    per_trial = ours_wall * 1e3 / trials
    return Figure(
        id="P6",
        what=f"bookkeeping: {trials} no-op trials through the sweep machinery (concurrency 2)",
        target="report; compare with Ray's release test",
        value=(
            f"{rdb_wall * 1e3 / trials:.0f} ms wall, {rdb_cpu * 1e3 / trials:.0f} ms driver CPU "
            f"per trial with the study in optuna.db ({per_trial:.0f} / "
            f"{ours_cpu * 1e3 / trials:.0f} ms in memory; bare Tuner "
            f"{bare_wall * 1e3 / trials:.0f} / {bare_cpu * 1e3 / trials:.0f} ms); "
            f"{min(runs, rdb_runs)} of {trials} MLflow runs"
        ),
        met=None,
        details="\n".join(
            [
                f"{trials} trials that report one epoch and end; one Ray session for both "
                f"(its start-up, {startup:.1f} s, not counted); our sweep's wall time includes "
                "its MLflow sync and summary at the end, and its progress lines (written to "
                "/dev/null). The Optuna study's RDB, the default of a `tune` or `compare` "
                "without `--address`, costs "
                f"{(rdb_cpu - ours_cpu) * 1e3 / trials:+.0f} ms of driver CPU and "
                f"{(rdb_wall - ours_wall) * 1e3 / trials:+.0f} ms of wall time per trial. Every "
                f"trial got its MLflow child run: {runs} and {rdb_runs} of {trials}.",
                "",
                markdown_table(table),
                "",
                "Ray's release test `tune_scalability_bookkeeping_overhead` (release/tune_tests/"
                f"scalability_tests/workloads/test_bookkeeping_overhead.py) runs {RAY_TRIALS:,} "
                f"trials of {RAY_TRIAL_S:g} s, {RAY_CPUS} at once on {RAY_CPUS} CPUs, within "
                f"{RAY_LIMIT_S:g} s against a theoretical {RAY_TRIALS:,} × {RAY_TRIAL_S:g} s / "
                f"{RAY_CPUS} = {RAY_IDEAL_S:g} s: it allows ({RAY_LIMIT_S:g} − {RAY_IDEAL_S:g}) s "
                f"/ {RAY_TRIALS:,} = {RAY_WALL_MS_PER_TRIAL:g} ms of wall time per trial, or "
                f"{RAY_CPUS} × {RAY_LIMIT_S:g} s / {RAY_TRIALS:,} − {RAY_TRIAL_S:g} s = "
                f"{RAY_SLOT_S_PER_TRIAL:.2f} s of slot time per trial. Here, with "
                f"{CONCURRENCY} at once on {os.cpu_count()} cores, ours costs "
                f"{ours_wall * CONCURRENCY / trials:.2f} s of slot time per trial (bare Tuner "
                f"{bare_wall * CONCURRENCY / trials:.2f} s).",
            ]
        ),
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
