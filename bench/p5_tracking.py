"""P5: what a logged result costs the training loop, and how fast the store fills.

A result is one epoch of one trial: 16 metrics at one step, logged through
``margin_tune.pipeline.tracking.tracker.Tracker`` (the driver's queue and its background writer)
into a
fresh SQLite
store, or any store given with ``--tracking-uri`` (such as a loopback ``mlflow server``):

* burst: every result of several trials logged back to back, then ``flush``: the store's
  capacity, since the writer merges whatever piled up into few ``log_batch`` calls;
* paced: results arriving at a fixed rate with idle time between them, as from training loops;
  the caller's cost here is what a trial's report pays, and the lag after the last result shows
  whether the store keeps up with that rate.

Run: ``python -m bench.p5_tracking [--quick] [--tracking-uri URI]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.common import Figure
from bench.tables import markdown_table
from margin_tune.pipeline.tracking.tracker import Tracker

METRICS_PER_RESULT = 16
TARGET_CALLER_MS = 1.0
TARGET_RESULTS_PER_S = 200.0


@dataclass(frozen=True)
class Load:
    """One way results arrive: ``rate`` None means back to back."""

    name: str
    runs: int
    results: int
    rate: float | None


@dataclass(frozen=True)
class LoadFigures:
    load: Load
    caller_ms: list[float]
    written_per_s: float
    lag_ms: float

    def row(self) -> dict[str, object]:
        ordered = sorted(self.caller_ms)
        return {
            "load": self.load.name,
            "results": self.load.results,
            "caller median ms": statistics.median(ordered),
            "caller mean ms": statistics.fmean(ordered),
            "caller p99 ms": ordered[int(0.99 * (len(ordered) - 1))],
            "caller max ms": ordered[-1],
            "written results/s": self.written_per_s,
            "store lag after last ms": self.lag_ms,
        }


def _result(step: int) -> dict[str, float]:
    return {f"metric_{index}": step + index / 100 for index in range(METRICS_PER_RESULT)}


def run_load(tracker: Tracker, load: Load) -> LoadFigures:
    sweep = tracker.sweep_run(load.name, sweep_id=f"{load.name}-{time.time_ns()}")
    trials = [tracker.child_run(sweep, f"trial-{index}") for index in range(load.runs)]
    tracker.flush()
    calls: list[float] = []
    start = time.perf_counter()
    for index in range(load.results):
        if load.rate is not None:
            time.sleep(max(0.0, start + index / load.rate - time.perf_counter()))
        before = time.perf_counter()
        tracker.log_epoch(trials[index % load.runs], _result(index // load.runs), index)
        calls.append((time.perf_counter() - before) * 1e3)
    last = time.perf_counter()
    tracker.flush()
    done = time.perf_counter()
    return LoadFigures(load, calls, load.results / (done - start), (done - last) * 1e3)


def measure(quick: bool, tracking_uri: str | None = None) -> Figure:
    loads = [
        Load("burst", runs=8, results=400 if quick else 2000, rate=None),
        Load("paced 300/s", runs=4, results=300 if quick else 1500, rate=300.0),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-p5-") as directory:
        uri = tracking_uri or f"sqlite:///{Path(directory) / 'mlflow.db'}"
        with Tracker(uri, "bench-p5", artifact_location=Path(directory).as_uri()) as tracker:
            burst, paced = (run_load(tracker, load) for load in loads)
    table = pd.DataFrame([burst.row(), paced.row()])
    caller = statistics.fmean(paced.caller_ms)
    store = "sqlite (fresh file)" if tracking_uri is None else tracking_uri
    return Figure(
        id="P5",
        what="MLflow logging: caller overhead per result, and store throughput",
        target=f"≤ {TARGET_CALLER_MS:g} ms; ≥ {TARGET_RESULTS_PER_S:g} results/s",
        value=(
            f"{caller:.3f} ms mean per result (p99 {paced.row()['caller p99 ms']:.3f} ms); "
            f"{burst.written_per_s:.0f} results/s written"
        ),
        met=caller <= TARGET_CALLER_MS and burst.written_per_s >= TARGET_RESULTS_PER_S,
        details="\n".join(
            [
                f"Store: {store}. A result is {METRICS_PER_RESULT} metrics at one step, logged "
                "with `Tracker.log_epoch` (what the sweep's callback calls per reported epoch). "
                "Caller cost is the paced load's (results arriving as from training loops); "
                "throughput is the burst's, counted until `flush` returned.",
                "",
                markdown_table(table, "{:.3g}"),
            ]
        ),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tracking-uri", help="default: a fresh SQLite store in a temp dir")
    arguments = parser.parse_args()
    print(measure(arguments.quick, arguments.tracking_uri))
