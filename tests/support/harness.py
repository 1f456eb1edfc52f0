"""Helpers of the fault-injection tests: waiting, a Ray kept to itself, a watched tracker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mlflow import MlflowClient

from margin_tune.pipeline.tracking.tracker import Tracker

_T = TypeVar("_T")


def wait_for(probe: Callable[[], _T | None], timeout: float, what: str) -> _T:
    """Polls ``probe`` until it returns something other than None, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def private_ray_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Points ``RAY_TMPDIR`` at a fresh directory for as long as the block lasts.

    Ray records the last cluster started on a host in ``<tmp>/ray/ray_current_cluster``, and
    ``ray.init()`` without an address joins the cluster named there instead of starting its own
    (then refuses ``num_cpus``: "When connecting to an existing cluster, num_cpus and num_gpus
    must not be provided"). With its own directory a test neither joins another test's or
    user's cluster nor lets them join its own. The path is short: Ray's socket paths under it
    must stay within the 107 bytes a Unix socket name may have.
    """
    directory = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", directory)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class WatchedTracker(Tracker):
    """A tracker that notes when each trial run is asked for and given, and can be paused.

    ``requests`` holds the times each trial's run was asked for: a sweep asks once per trial,
    so a second request means the sweep's end had to repair the run from Ray's results, i.e.
    the live path lost something. ``answered`` holds when the store last gave it. While a
    test holds ``gate``, no epoch can be logged (the caller, Tune's event loop, waits).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Lock()
        self.requests: defaultdict[str, list[float]] = defaultdict(list)
        self.answered: dict[str, float] = {}

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int) -> bool:
        with self.gate:
            return super().log_epoch(run_id, metrics, step)

    def child_run(self, parent_run_id: str, trial_id: str, *args: Any, **kwargs: Any) -> str:
        self.requests[trial_id].append(time.monotonic())
        run_id = super().child_run(parent_run_id, trial_id, *args, **kwargs)
        self.answered[trial_id] = time.monotonic()
        return run_id


def snapshot_time(experiment: Path) -> float:
    """When Tune last wrote the experiment state that ``resume`` reads."""
    return max((p.stat().st_mtime for p in experiment.glob("experiment_state-*.json")), default=0)


def store_contents(client: MlflowClient, experiment_id: str) -> dict[str, Any]:
    """Every run's status, tags, params and full metric histories: what a sync may not change."""
    contents = {}
    for run in client.search_runs([experiment_id], max_results=1000):
        histories = {
            key: sorted(
                (m.step, m.timestamp, m.value)
                for m in client.get_metric_history(run.info.run_id, key)
            )
            for key in run.data.metrics
        }
        contents[run.info.run_id] = (
            run.info.status,
            run.info.end_time,
            run.data.tags,
            run.data.params,
            histories,
        )
    return contents


def kill_once_an_end_is_snapshotted(
    command: list[str], log: Path, experiment: Path, finished: Callable[[], dict[Path, str]]
) -> dict[Path, str]:
    """Run ``command`` in its own session and SIGKILL its process group (the driver and the
    local Ray it started) once ``finished`` returns something and Tune has saved that end.

    Tune snapshots on every controller step here, so the kill comes soon after the end, and
    writes its snapshot in the background, so the second snapshot after the end holds it.
    Returns what ``finished`` returned once the first snapshot after the end was written: what
    the second one, taken before the kill, surely holds (a trial that ended in between may
    run again on resume, as the README says).
    """
    with log.open("w") as handle:
        driver = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"},
        )
    try:
        wait_for(lambda: finished() or None, 240, "a finished trial")
        ended = time.time()
        first = wait_for(
            lambda: snapshot_time(experiment) if snapshot_time(experiment) > ended else None,
            60,
            "a snapshot",
        )
        # What has ended by now, the next snapshot (begun after this one was written) holds;
        # a trial that ends later may miss it and rightly run again on resume.
        recorded = finished()
        wait_for(lambda: snapshot_time(experiment) > first or None, 60, "a second snapshot")
        return recorded
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        assert driver.returncode == -signal.SIGKILL, log.read_text()[-3000:]
