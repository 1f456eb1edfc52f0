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
from mlflow import MlflowClient
from ray import cloudpickle, tune

from bench.common import Figure
from bench.tables import markdown_table
from margin_tune.pipeline.runtime.console import verbosity
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep
from margin_tune.pipeline.sweep.session import ray_session
from margin_tune.pipeline.sweep.tuner import run_sweep
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.parts import load_config

TRIALS = 500
REPEATS = 3
CONCURRENCY = 2
#: Issue 20's budget: driver CPU per trial.
TARGET_CPU_MS = 45.0
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
    cost is in the figure; ``storage``: the Optuna study's storage, as ``tune`` puts it in the
    output directory by default (:func:`default_storage`), or None for a study in memory.
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
        Tracker(
            f"sqlite:///{scratch / name}.db",
            "bench-p6",
            artifact_location=(scratch / f"{name}-artifacts").as_uri(),
        ) as tracker,
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
        run_config=tune.RunConfig(storage_path=str(scratch), name="bare", verbose=0),
    )
    wall, cpu, _ = _timed(tuner.fit)
    return wall, cpu


def default_storage(out: Path) -> str | None:
    """Where ``tune`` keeps the study of a sweep in ``out`` without ``--storage``: a journal
    file now, ``sqlite:///DIR/optuna.db`` before (measured as it was on a commit before)."""
    try:
        from margin_tune.pipeline.api.config import OPTUNA_JOURNAL
    except ImportError:  # the commits before the journal
        return f"sqlite:///{out / 'optuna.db'}"
    out.mkdir(parents=True, exist_ok=True)
    return str(out / OPTUNA_JOURNAL)


#: The MlflowClient calls the tracker's writer makes for a trial.
CLIENT_CALLS = (
    "create_run",
    "search_runs",
    "log_batch",
    "log_inputs",
    "log_artifact",
    "set_terminated",
    "update_run",
    "get_metric_history",
)


def mlflow_calls(trials: int, scratch: Path) -> pd.DataFrame:
    """Per MlflowClient method: calls and CPU (of the calling thread) per trial, in one more
    sweep with the default storage: where the writer thread's share of the driver CPU goes."""
    spent: dict[str, list[float]] = {name: [0, 0.0] for name in CLIENT_CALLS}
    originals = {name: getattr(MlflowClient, name) for name in CLIENT_CALLS}

    def counted(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return originals[name](*args, **kwargs)
            finally:
                spent[name][0] += 1
                spent[name][1] += time.thread_time() - started

        return call

    try:
        for name in CLIENT_CALLS:
            setattr(MlflowClient, name, counted(name))
        ours(trials, scratch, "counted", default_storage(scratch / "counted"))
    finally:
        for name, original in originals.items():
            setattr(MlflowClient, name, original)
    table = pd.DataFrame(
        [
            {"MlflowClient call": name, "calls/trial": n / trials, "CPU ms/trial": t * 1e3 / trials}
            for name, (n, t) in spent.items()
            if n
        ]
    ).sort_values("CPU ms/trial", ascending=False)
    table["CPU ms/call"] = table["CPU ms/trial"] / table["calls/trial"]
    return table


def measure(quick: bool) -> Figure:
    trials, repeats = (50, 1) if quick else (TRIALS, REPEATS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-p6-") as directory:
        scratch = Path(directory)
        started = time.perf_counter()
        with ray_session(None):
            startup = time.perf_counter() - started
            for repeat in range(repeats):
                bare_wall, bare_cpu = bare(trials, scratch / f"bare-{repeat}")
                ours_wall, ours_cpu, runs = ours(trials, scratch, f"memory-{repeat}", None)
                stored = default_storage(scratch / f"stored-{repeat}")
                stored_run = ours(trials, scratch, f"stored-{repeat}", stored)
                stored_wall, stored_cpu, stored_runs = stored_run
                for sweep, wall, cpu, made in (
                    ("bare Tuner (Ray's defaults)", bare_wall, bare_cpu, trials),
                    ("ours, Optuna study in memory (--address)", ours_wall, ours_cpu, runs),
                    (
                        f"ours, Optuna study in {Path(stored or '').name} (the default)",
                        stored_wall,
                        stored_cpu,
                        stored_runs,
                    ),
                ):
                    rows.append(
                        {
                            "repeat": repeat,
                            "sweep": sweep,
                            "wall s": wall,
                            "driver CPU s": cpu,
                            "MLflow runs": made,
                        }
                    )
            calls = mlflow_calls(trials // 2, scratch)
    table = pd.DataFrame(rows)
    table["wall ms/trial"] = table["wall s"] * 1e3 / trials
    table["driver CPU ms/trial"] = table["driver CPU s"] * 1e3 / trials
    table["slot s/trial"] = table["wall s"] * CONCURRENCY / trials
    median = table.groupby("sweep", sort=False)[["wall ms/trial", "driver CPU ms/trial"]].median()
    spread = table.groupby("sweep", sort=False)["driver CPU ms/trial"].agg(["min", "max"])
    bare_row, memory_row, stored_row = (median.iloc[i] for i in range(3))
    cpu_ms = float(stored_row["driver CPU ms/trial"])
    ratio = cpu_ms / float(bare_row["driver CPU ms/trial"])
    stored_spread = spread.iloc[2]
    complete = int(table["MLflow runs"].min())
    return Figure(
        id="P6",
        what=f"bookkeeping: {trials} no-op trials through the sweep machinery (concurrency 2)",
        target=f"driver CPU ≤ {TARGET_CPU_MS:g} ms per trial with the study stored as by default",
        value=(
            f"{cpu_ms:.0f} ms driver CPU ({stored_spread['min']:.0f}–{stored_spread['max']:.0f}, "
            f"n={repeats}), {stored_row['wall ms/trial']:.0f} ms wall per trial with the study "
            f"stored as by default, {ratio:.2f}× the bare Tuner's "
            f"{bare_row['driver CPU ms/trial']:.0f} ms "
            f"(in memory: {memory_row['driver CPU ms/trial']:.0f} ms); {complete} of {trials} "
            "MLflow runs"
        ),
        met=bool(cpu_ms <= TARGET_CPU_MS),
        details="\n".join(
            [
                f"{trials} trials that report one epoch and end, {repeats} repeats of the three "
                f"sweeps in one Ray session (its start-up, {startup:.1f} s, not counted); "
                "medians over the repeats. Our sweep's wall time includes its MLflow sync and "
                "summary at the end, and its progress lines (written to /dev/null). The Optuna "
                "study's storage, the default of a `tune` or `compare` without `--address`, costs "
                f"{cpu_ms - memory_row['driver CPU ms/trial']:+.0f} ms of driver CPU per trial. "
                f"Every trial got its MLflow child run: at least {complete} of {trials}.",
                "",
                markdown_table(table),
                "",
                f"Where the MLflow writer's CPU goes: one more sweep of {trials // 2} trials "
                "with every MlflowClient call timed (CPU of the writer thread, which is part of "
                f"the driver's): {calls['CPU ms/trial'].sum():.0f} ms per trial in all.",
                "",
                markdown_table(calls),
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
                f"{stored_row['wall ms/trial'] * CONCURRENCY / 1e3:.2f} s of slot time per trial "
                f"(bare Tuner {bare_row['wall ms/trial'] * CONCURRENCY / 1e3:.2f} s).",
            ]
        ),
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
