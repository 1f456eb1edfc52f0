"""P10: ``margin-tune report`` on a store of 500 runs, import included, and its loading alone.

The store holds 5 sweeps of 99 trials each (500 runs with the parents), every trial with
10 epochs of the 16 metrics margin-tune logs per epoch, written by the real
``Tracker`` into SQLite. Timed, best of 3:

* the whole command, ``margin-tune report`` (overview) and ``report --sweep ID`` (one sweep's
  99 trials), as subprocesses: interpreter start, imports, the search and the table;
* the loading alone, in this process: one paged ``search_runs`` (``ExperimentRuns``) and the
  tables built from it.

The same store without the ``epoch`` metric (what runs logged before 0.2 hold) shows what
reading each trial's epochs from its history cost: one ``get_metric_history`` per trial.

Run: ``python -m bench.p10_report [--quick]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from bench.common import Figure
from margin_tune.pipeline.analysis.report import ExperimentRuns, build_report
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.metric_names import EPOCH_COLUMNS

SWEEPS, TRIALS, EPOCHS = 5, 99, 10
TARGET_COMMAND_S, TARGET_LOADING_S = 6.0, 1.5
EXPERIMENT = "p10"
METRICS = [c for c in EPOCH_COLUMNS if c != "epoch"][:15]


def build_store(root: Path, *, sweeps: int, trials: int, with_epoch: bool) -> tuple[str, str]:
    """A SQLite store of ``sweeps`` × ``trials`` trial runs; returns its URI and a sweep id."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with Tracker(uri, EXPERIMENT) as tracker:
        for s in range(sweeps):
            sweep = tracker.sweep_run(
                f"sweep-{s}",
                params={"metric": "val_map_at_r", "mode": "max", "searcher": "tpe"},
                sweep_id=f"sweep-{s}",
            )
            for t in range(trials):
                trial = tracker.child_run(sweep, f"s{s}-t{t}", params={"train.lr": 1e-3 * (t + 1)})
                for epoch in range(1, EPOCHS + 1):
                    values = {name: (t + epoch) / 100 for name in METRICS}
                    if with_epoch:
                        values["epoch"] = float(epoch)
                    tracker.log_epoch(trial, values, step=epoch)
                tracker.end_run(trial)
            tracker.end_run(sweep)
    return uri, "sweep-0"


def command_seconds(uri: str, *args: str) -> float:
    """Best of 3 walls of ``margin-tune report`` with ``args``, from a fresh interpreter."""
    executable = Path(sys.executable).with_name("margin-tune")
    walls = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [str(executable), "report", "--tracking-uri", uri, "--experiment", EXPERIMENT, *args],
            check=True,
            capture_output=True,
        )
        walls.append(time.perf_counter() - started)
    return min(walls)


def loading_seconds(uri: str, sweep: str) -> float:
    """Best of 3: one experiment read and the sweep's table built, in this process."""
    walls = []
    for _ in range(3):
        started = time.perf_counter()
        client = MlflowClient(uri)
        ExperimentRuns(client, EXPERIMENT)
        build_report(client, EXPERIMENT, sweep=sweep)
        walls.append(time.perf_counter() - started)
    return min(walls)


def measure(quick: bool) -> Figure:
    sweeps, trials = (1, 9) if quick else (SWEEPS, TRIALS)
    with tempfile.TemporaryDirectory() as now, tempfile.TemporaryDirectory() as before:
        uri, sweep = build_store(Path(now), sweeps=sweeps, trials=trials, with_epoch=True)
        old_uri, _ = build_store(Path(before), sweeps=sweeps, trials=trials, with_epoch=False)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None
        runs = len(client.search_runs([experiment.experiment_id], max_results=5000))
        overview = command_seconds(uri)
        one_sweep = command_seconds(uri, "--sweep", sweep)
        loading = loading_seconds(uri, sweep)
        old_sweep = command_seconds(old_uri, "--sweep", sweep)
        old_loading = loading_seconds(old_uri, sweep)
    worst = max(overview, one_sweep)
    return Figure(
        "P10",
        f"`report` on a store of {runs} runs: the whole command, and the loading alone",
        f"command ≤ {TARGET_COMMAND_S:g} s; loading ≤ {TARGET_LOADING_S:g} s",
        f"overview {overview:.2f} s, --sweep {one_sweep:.2f} s; loading {loading:.2f} s "
        f"(runs without `epoch`, as before 0.2: --sweep {old_sweep:.2f} s, loading "
        f"{old_loading:.2f} s)",
        worst <= TARGET_COMMAND_S and loading <= TARGET_LOADING_S,
        f"{sweeps} sweeps × {trials} trials × {EPOCHS} epochs × {len(METRICS) + 1} metrics in "
        "SQLite; best of 3 each; the command timed as a subprocess from interpreter start",
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny store: checks the code runs")
    figure = measure(parser.parse_args(argv).quick)
    print(f"{figure.id}: {figure.value} (target {figure.target}; met: {figure.met})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
