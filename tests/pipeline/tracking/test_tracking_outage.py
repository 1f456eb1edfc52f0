"""The MLflow server goes down mid-sweep and comes back: nothing the sweep recorded is lost.

A real ``mlflow server`` (SQLite store, loopback, a free port) records a sweep of three trials,
two at a time, on a local Ray. Once the first epoch is in the store the server is stopped; the
running trials go on and their epochs wait in the tracker's queue. When the third trial starts,
the driver asks for its run: ``Tracker.child_run`` must not stop the sweep nor hold Tune's loop
(it returns a provisional id within its open timeout and the run is opened when the store is
back). The server is started again on the same port and store only once that call has returned
and more than the open timeout has passed. At the end every trial has one run, every epoch
once, status FINISHED, and nothing was dropped.

The order is made certain, not likely: the driver may log no epoch while the server is being
stopped (a lock the test holds), so no trial can end, and the third start, before the store
is down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import WatchedTracker, private_ray_tmpdir, wait_for
from mlflow import MlflowClient
from mlflow_server import MlflowServer

from margin_tune.pipeline.search.space import parse_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep
from margin_tune.pipeline.sweep.session import ray_session
from margin_tune.pipeline.sweep.tuner import run_sweep
from margin_tune.pipeline.tracking.vocabulary import STATUS_TAG, TRIAL_ID_TAG
from margin_tune.trainables.parts import load_config

pytestmark = pytest.mark.slow

EXPERIMENT = "outage"
TRIALS = 3
EPOCHS = 10
BATCHES_PER_EPOCH = 30
#: Tracker.child_run's wait for the store, shortened from 5 s; the outage outlasts it.
OPEN_TIMEOUT = 2.0
SPACE = {
    "metric": "val_roc_auc",
    "mode": "max",
    "parameters": {
        "margin.scheduler": {"distribution": "fixed", "value": "dams"},
        "train.lr": {"distribution": "categorical", "choices": [0.001, 0.003]},
    },
}


@dataclass
class Outage:
    """When the store was down (monotonic and wall clock) and which trial start it caught."""

    down_since: float = 0.0
    down_since_wall: float = 0.0
    restarting_wall: float = 0.0
    restarting_at: float = 0.0
    back_at: float = 0.0
    blocked_trial: str = ""
    pending_at_restart: int = 0
    error: BaseException | None = None
    timings: dict[str, float] = field(default_factory=dict)


def stop_then_restart(server: MlflowServer, tracker: WatchedTracker, outage: Outage) -> None:
    """Stops the server after the first logged epoch; restarts it once a trial start has been
    answered while it was down and the open timeout has passed.

    On any failure the server is brought back anyway, so that the sweep and the tracker's
    ``close`` (which waits for the store) end and the test can report what went wrong.
    """
    client = MlflowClient(server.url)
    down = False
    try:

        def first_epoch_logged() -> bool | None:
            runs = client.search_runs([tracker.experiment_id])
            return True if any("val_roc_auc" in run.data.metrics for run in runs) else None

        wait_for(first_epoch_logged, 120, "the first epoch in the store")
        started = time.monotonic()
        with tracker.gate:
            server.stop()
            down = True
            outage.down_since, outage.down_since_wall = time.monotonic(), time.time()
        outage.timings["stop_s"] = outage.down_since - started

        def trial_started_while_down() -> str | None:
            asked = list(tracker.requests.items())  # one call: the driver thread adds to it
            late = [trial for trial, times in asked if times[0] > outage.down_since]
            return late[0] if late else None

        outage.blocked_trial = wait_for(trial_started_while_down, 120, "a trial start")
        asked = tracker.requests[outage.blocked_trial][0]
        outage.timings["down_until_trial_start_s"] = asked - outage.down_since
        wait_for(lambda: tracker.answered.get(outage.blocked_trial), 60, "the trial's run id")
        time.sleep(max(0.0, asked + OPEN_TIMEOUT + 0.5 - time.monotonic()))
        outage.pending_at_restart = tracker.pending
        outage.restarting_wall = time.time()
        outage.restarting_at = time.monotonic()
        started = time.monotonic()
        server.start()
        down = False
        outage.back_at = time.monotonic()
        outage.timings["restart_s"] = outage.back_at - started
        outage.timings["outage_s"] = outage.back_at - outage.down_since
    except BaseException as exc:  # surfaced by the test, not lost in the thread
        outage.error = exc
        if down:
            server.start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    """A server on a free port, not yet started; stopped at the end whatever happened."""
    running = MlflowServer(tmp_path, tmp_path / "server.db")
    yield running
    running.stop()


def test_sweep_loses_nothing_when_the_tracking_server_restarts(
    server: MlflowServer,
    tiny_overrides: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the tracker would set for the whole process; set here so the test restores them.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # No job runner beside the server: it halves the server's start (38 s to 20 s, loaded).
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    base = load_config(
        overrides=[
            *tiny_overrides,
            f"train.epochs={EPOCHS}",
            f"train.batches_per_epoch={BATCHES_PER_EPOCH}",
            "collapse.enabled=false",  # no early stop: every trial runs all its epochs
        ]
    )
    space = parse_space(SPACE, base, name="outage")
    options = SweepOptions(
        trials=TRIALS,
        concurrency=2,
        searcher="random",
        seed=0,
        early_stopping=False,
        tracking_uri=server.url,
    )
    plan = plan_sweep("outage", base, space, options, tmp_path / "sweep")
    outage = Outage()
    began = time.perf_counter()
    with private_ray_tmpdir(monkeypatch), ThreadPoolExecutor(1) as pool:
        starting = pool.submit(server.start)  # the server starts while Ray does
        with ray_session(None, num_cpus=2):
            starting.result()
            outage.timings["setup_s"] = time.perf_counter() - began
            # Retries every 0.5 s at most, so the server's return is seen at once.
            tracker = WatchedTracker(
                server.url,
                EXPERIMENT,
                retry_initial=0.1,
                retry_max=0.5,
                open_timeout=OPEN_TIMEOUT,
            )
            injector = threading.Thread(
                target=stop_then_restart, args=(server, tracker, outage), daemon=True
            )
            injector.start()
            with tracker:
                result = run_sweep(plan, tracker)
                assert tracker.close()
            injector.join(timeout=10)
    outage.timings["total_s"] = time.perf_counter() - began
    print("tracking outage timings:", {k: round(v, 1) for k, v in outage.timings.items()})
    if outage.error is not None:
        raise outage.error
    assert tracker.dropped == 0

    # The trial that started while the store was down got its run id at once or within the
    # open timeout, long before the store was back; its records waited in the queue.
    asked = tracker.requests[outage.blocked_trial][0]
    answered = tracker.answered[outage.blocked_trial]
    assert answered - asked <= OPEN_TIMEOUT + 1.0
    assert answered < outage.restarting_at
    assert outage.restarting_at - asked >= OPEN_TIMEOUT
    assert outage.pending_at_restart > 0

    client = MlflowClient(server.url)
    sweep = client.get_run(result.parent_run_id)
    assert sweep.info.status == "FINISHED"
    children = client.search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    trial_ids = sorted(run.data.tags[TRIAL_ID_TAG] for run in children)
    assert trial_ids == sorted(result.trials[TRIAL_ID_TAG])
    assert len(trial_ids) == TRIALS
    # Each run was asked for once, at the trial's start: what the store holds came through
    # the live path (the late trial's run opened by the writer), none of it from the repair at
    # the sweep's end.
    assert {trial: len(times) for trial, times in tracker.requests.items()} == dict.fromkeys(
        trial_ids, 1
    )
    assert set(result.trials["status"]) == {"completed"}
    logged_while_down = 0
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags[STATUS_TAG] == "completed"
        assert len(run.data.metrics) > 10
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == list(range(1, EPOCHS + 1)), key
            logged_while_down += sum(
                outage.down_since_wall * 1000 <= m.timestamp < outage.restarting_wall * 1000
                for m in history
            )
    assert logged_while_down > 0, "no epoch was logged while the server was down"
