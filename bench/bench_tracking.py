"""Times pipeline.tracking: what a logged result costs the caller, and how fast the store fills.

A result is one epoch of one trial: 16 metrics at one step. Two loads are run against a fresh
SQLite store (or any store given with ``--tracking-uri``, such as a loopback ``mlflow server``):

* burst: every result of several trials logged back to back, then ``flush``; the store's
  capacity, since the writer merges whatever piled up into few ``log_batch`` calls;
* paced: results arriving at a fixed rate with idle time between them, as from training
  loops; the caller's cost here is what a trial pays, and the lag after the last result shows
  whether the store keeps up with that rate.

Run with ``python bench/bench_tracking.py [--tracking-uri URI]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.tracking import Tracker

METRICS_PER_RESULT = 16
BURST_RUNS = 8
BURST_EPOCHS = 250
PACED_RUNS = 4
PACED_RATE = 300.0
PACED_SECONDS = 5.0


def _result(step: int) -> dict[str, float]:
    return {f"metric_{index}": step + index / 100 for index in range(METRICS_PER_RESULT)}


def _describe(label: str, call_seconds: list[float]) -> str:
    micros = sorted(seconds * 1e6 for seconds in call_seconds)
    p99 = micros[int(0.99 * (len(micros) - 1))]
    return (
        f"{label}: caller {statistics.median(micros):.0f} µs median, "
        f"{statistics.fmean(micros):.0f} µs mean, {p99:.0f} µs p99, {micros[-1]:.0f} µs max"
    )


def _trials(tracker: Tracker, name: str, count: int) -> list[str]:
    sweep = tracker.sweep_run(name, sweep_id=f"{name}-{time.time_ns()}")
    return [tracker.child_run(sweep, f"trial-{index}") for index in range(count)]


def _burst(tracker: Tracker) -> None:
    trials = _trials(tracker, "burst", BURST_RUNS)
    calls: list[float] = []
    start = time.perf_counter()
    for step in range(BURST_EPOCHS):
        for trial in trials:
            before = time.perf_counter()
            tracker.log_epoch(trial, _result(step), step)
            calls.append(time.perf_counter() - before)
    logged = time.perf_counter() - start
    tracker.flush()
    written = time.perf_counter() - start
    rate = len(calls) / written
    print(_describe(f"burst ({len(calls)} results over {BURST_RUNS} runs)", calls))
    print(
        f"burst: logged in {logged:.2f} s, written in {written:.2f} s: {rate:.0f} results/s "
        f"({rate * METRICS_PER_RESULT:.0f} metrics/s)"
    )


def _paced(tracker: Tracker) -> None:
    trials = _trials(tracker, "paced", PACED_RUNS)
    interval = 1.0 / PACED_RATE
    total = int(PACED_RATE * PACED_SECONDS)
    calls: list[float] = []
    start = time.perf_counter()
    for index in range(total):
        time.sleep(max(0.0, start + index * interval - time.perf_counter()))
        before = time.perf_counter()
        tracker.log_epoch(trials[index % PACED_RUNS], _result(index // PACED_RUNS), index)
        calls.append(time.perf_counter() - before)
    last = time.perf_counter()
    tracker.flush()
    done = time.perf_counter()
    print(_describe(f"paced ({total} results at {PACED_RATE:.0f}/s)", calls))
    print(
        f"paced: {total / (done - start):.0f} results/s written, "
        f"store {1000 * (done - last):.0f} ms behind the last result"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="default: a fresh SQLite store in a temp dir")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as directory:
        uri = args.tracking_uri or f"sqlite:///{Path(directory) / 'mlflow.db'}"
        with Tracker(uri, "bench-tracking", artifact_location=Path(directory).as_uri()) as tracker:
            print(f"store: {tracker.tracking_uri}")
            _burst(tracker)
            _paced(tracker)


if __name__ == "__main__":
    main()
