"""Tests of margin_tune.pipeline.tracking.tracker against a real MLflow store: SQLite, and a real
`mlflow
server`."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from mlflow_server import MlflowServer

from margin_tune.pipeline.sweep.inputs import DatasetInputs, split_key
from margin_tune.pipeline.tracking.records import (
    MAX_ERROR_CHARS,
    DatasetRecord,
    check_name,
    flatten_params,
)
from margin_tune.pipeline.tracking.store import resolve_tracking_uri
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import ERROR_TAG, SWEEP_ID_TAG, TRIAL_ID_TAG
from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data import load_dataset

EPOCH_KEYS = [f"metric_{index}" for index in range(16)]
OPEN_TIMEOUT = 1.0


def _tracker(uri: str, experiment: str = "tests", **options: Any) -> Tracker:
    """A tracker with short retry waits, so outage tests finish in seconds."""
    return Tracker(uri, experiment, retry_initial=0.05, retry_max=0.2, **options)


def _epoch(step: int) -> dict[str, float]:
    return {key: step + index / 100 for index, key in enumerate(EPOCH_KEYS)}


def _dataset_records() -> tuple[DatasetRecord, ...]:
    """The training and validation inputs of a small generated dataset."""
    config = DatasetConfig(num_classes=20, samples_per_class=4, dim=3)
    return DatasetInputs.build(load_dataset(config), [config]).records[split_key(config)]


def _steps(client: MlflowClient, run_id: str, key: str = "metric_0") -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty store: creating one costs seconds, copying it costs milliseconds."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store_uri(template_db: Path, tmp_path: Path) -> str:
    path = tmp_path / "mlflow.db"
    shutil.copy(template_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def tracker(store_uri: str, tmp_path: Path) -> Iterator[Tracker]:
    with _tracker(store_uri, artifact_location=(tmp_path / "artifacts").as_uri()) as opened:
        yield opened


def test_flatten_params_uses_dotted_keys_and_json_text() -> None:
    config = {
        "loss": {"margin": 0.2, "scheduler": {"name": "linear", "warmup": None}},
        "layers": [128, 64],
        "normalize": True,
        "name": "plain",
        "extra": {},
    }
    assert flatten_params(config) == {
        "loss.margin": "0.2",
        "loss.scheduler.name": "linear",
        "loss.scheduler.warmup": "null",
        "layers": "[128, 64]",
        "normalize": "true",
        "name": "plain",
        "extra": "{}",
    }


def test_resolve_tracking_uri_prefers_argument_then_env_then_absolute_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri("sqlite:////data/x.db") == "sqlite:////data/x.db"
    assert resolve_tracking_uri() == "http://127.0.0.1:1"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_nesting_params_metrics_statuses_and_error_tag(tracker: Tracker) -> None:
    comparison = tracker.sweep_run("compare", sweep_id="cmp-1")
    sweep = tracker.sweep_run(
        "sweep", params={"search": {"samples": 4}}, parent_run_id=comparison, sweep_id="sw-1"
    )
    config = {"loss": {"margin": 0.2}, "optimizer": {"lr": 1e-3}, "seed": 7}
    tags = {"scheduler": "linear", "dataset": "mnist", "seed": 7}
    good = tracker.child_run(sweep, "trial-0", params=config, tags=tags)
    bad = tracker.child_run(sweep, "trial-1", params=config, tags=tags)
    tagged = tracker.child_run(sweep, "trial-2", params=config, tags=tags)
    for step in range(3):
        assert tracker.log_epoch(good, _epoch(step), step)
    assert tracker.log_epoch(bad, _epoch(0), 0)
    try:
        raise RuntimeError("loss went NaN " + "x" * 2 * MAX_ERROR_CHARS)
    except RuntimeError as exc:
        tracker.end_run(bad, "FAILED", error=exc)
    tracker.set_tags(tagged, {ERROR_TAG: "y" * 2 * MAX_ERROR_CHARS + " the end"})
    tracker.end_run(tagged, "FAILED")
    tracker.end_run(good)
    tracker.log_metrics(sweep, {"best_roc_auc": 0.91, "trials_failed": 2})
    tracker.end_run(sweep)
    tracker.end_run(comparison)
    assert tracker.flush(timeout=30)

    client = MlflowClient(tracker.tracking_uri)
    ids = [tracker.experiment_id]
    children = client.search_runs(ids, f"tags.mlflow.parentRunId = '{sweep}'")
    assert {run.info.run_id for run in children} == {good, bad, tagged}
    [nested_sweep] = client.search_runs(ids, f"tags.mlflow.parentRunId = '{comparison}'")
    assert nested_sweep.info.run_id == sweep
    assert nested_sweep.data.tags[SWEEP_ID_TAG] == "sw-1"
    assert nested_sweep.data.params == {"search.samples": "4"}
    assert nested_sweep.data.metrics == {"best_roc_auc": 0.91, "trials_failed": 2.0}

    good_run = client.get_run(good)
    assert good_run.info.status == "FINISHED"
    assert good_run.data.params == {"loss.margin": "0.2", "optimizer.lr": "0.001", "seed": "7"}
    assert good_run.data.tags[TRIAL_ID_TAG] == "trial-0"
    assert good_run.data.tags["scheduler"] == "linear"
    assert good_run.data.tags["seed"] == "7"
    assert ERROR_TAG not in good_run.data.tags
    for key in EPOCH_KEYS:
        history = client.get_metric_history(good, key)
        assert [(metric.step, metric.value) for metric in history] == [
            (step, _epoch(step)[key]) for step in range(3)
        ]

    bad_run = client.get_run(bad)
    assert bad_run.info.status == "FAILED"
    error = bad_run.data.tags[ERROR_TAG]
    assert len(error) <= MAX_ERROR_CHARS
    assert error.rstrip().endswith("x")
    tagged_error = client.get_run(tagged).data.tags[ERROR_TAG]
    assert len(tagged_error) <= MAX_ERROR_CHARS
    assert tagged_error.endswith("y the end")
    assert client.get_run(comparison).info.status == "FINISHED"


def test_reopened_runs_are_reused_and_steps_are_never_logged_twice(
    store_uri: str,
) -> None:
    config = {"loss": {"margin": 0.2}}
    with _tracker(store_uri) as first:
        sweep = first.sweep_run("sweep", sweep_id="sw-1")
        trial = first.child_run(sweep, "trial-0", params=config)
        for step in range(3):
            first.log_epoch(trial, _epoch(step), step)
        assert not first.log_epoch(trial, _epoch(1), 1)
        first.end_run(trial, "KILLED")

    # A new tracker stands for the restarted process: it must learn what the store holds.
    with _tracker(store_uri) as second:
        assert second.sweep_run("sweep", sweep_id="sw-1") == sweep
        again = second.child_run(sweep, "trial-0", params=config, tags={"resumed": True})
        assert again == trial
        assert second.flush(timeout=30)
        client = MlflowClient(store_uri)
        assert client.get_run(trial).info.status == "RUNNING"
        assert [second.log_epoch(trial, _epoch(step), step) for step in range(5)] == [
            False,
            False,
            False,
            True,
            True,
        ]
        second.log_params(trial, config)
        with pytest.raises(ValueError, match="cannot change"):
            second.log_params(trial, {"loss": {"margin": 0.5}})
        second.end_run(trial)

    runs = client.search_runs(
        [second.experiment_id], f"tags.`{TRIAL_ID_TAG}` = 'trial-0'", max_results=10
    )
    assert [run.info.run_id for run in runs] == [trial]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["resumed"] == "true"
    for key in EPOCH_KEYS:
        assert _steps(client, trial, key) == [0, 1, 2, 3, 4]


def test_child_runs_opened_without_waiting_land_once_with_everything_logged_to_them(
    store_uri: str,
) -> None:
    """What Tune's event loop uses: the run is opened by the writer, in order with its logs;
    a restarted process re-opening the trial the same way neither duplicates it nor its steps."""
    with _tracker(store_uri) as first:
        sweep = first.sweep_run("sweep", sweep_id="sw-nowait")
        trial = first.child_run(sweep, "trial-0", params={"lr": 0.1}, wait=False)
        assert trial.startswith("pending-")
        for step in range(3):
            first.log_epoch(trial, _epoch(step), step)
        first.end_run(trial, "KILLED")
    with _tracker(store_uri) as second:
        again = second.child_run(sweep, "trial-0", params={"lr": 0.1}, wait=False)
        for step in range(5):
            second.log_epoch(again, _epoch(step), step)
        second.end_run(again)
    client = MlflowClient(store_uri)
    runs = client.search_runs([second.experiment_id], f"tags.mlflow.parentRunId = '{sweep}'")
    assert len(runs) == 1
    (run,) = runs
    assert (run.info.status, run.data.params) == ("FINISHED", {"lr": "0.1"})
    for key in EPOCH_KEYS:
        assert _steps(client, run.info.run_id, key) == [0, 1, 2, 3, 4]


def test_a_new_sweeps_trials_are_created_without_a_search_and_still_land_once(
    store_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a sweep run this tracker created, no trial run can exist yet: the writer creates
    it without searching (the search was an eighth of a trial's bookkeeping). A trial opened
    twice, and every trial of a sweep that was found rather than created, is searched for."""
    searches: list[str] = []
    search = MlflowClient.search_runs

    def counted(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        searches.append(str(kwargs.get("filter_string", args[1] if len(args) > 1 else "")))
        return search(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", counted)
    with _tracker(store_uri) as first:
        sweep = first.sweep_run("sweep", sweep_id="sw-new")
        assert len(searches) == 1  # the sweep's own find-or-create
        for trial_id in ("trial-0", "trial-1"):
            run = first.child_run(sweep, trial_id, params={"i": 0}, wait=False)
            first.log_epoch(run, _epoch(0), 0)
            first.end_run(run)
        assert first.flush(timeout=30)
        assert len(searches) == 1
        again = first.child_run(sweep, "trial-0", wait=False)  # a second opening: searched
        first.end_run(again)
        assert first.flush(timeout=30)
        assert len(searches) == 2
    with _tracker(store_uri) as second:  # a resume: the sweep is found, its trials searched
        found = second.sweep_run("sweep", sweep_id="sw-new")
        assert found == sweep
        second.end_run(second.child_run(sweep, "trial-1", wait=False))
        assert second.flush(timeout=30)
        assert len(searches) == 4
    client = MlflowClient(store_uri)
    runs = client.search_runs([second.experiment_id], f"tags.mlflow.parentRunId = '{sweep}'")
    assert sorted(run.data.tags[TRIAL_ID_TAG] for run in runs) == ["trial-0", "trial-1"]


def test_a_create_whose_answer_was_lost_is_found_not_repeated(
    tracker: Tracker, store_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store made the run but the answer never arrived: the retry must not make a second."""
    create = tracker._client.create_run
    lost: list[str] = []

    def create_and_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        run = create(*args, **kwargs)
        if len(lost) < 2:  # the sweep's create and the trial's
            lost.append(run.info.run_id)
            raise requests.exceptions.ConnectionError("connection reset; response lost")
        return run

    monkeypatch.setattr(tracker._client, "create_run", create_and_lose_the_answer)
    sweep = tracker.sweep_run("sweep", sweep_id="sw-1")
    trial = tracker.child_run(sweep, "trial-0", params={"i": 0})
    assert [sweep, trial] == lost
    assert tracker.flush(timeout=30)
    runs = MlflowClient(store_uri).search_runs([tracker.experiment_id])
    assert sorted(run.info.run_id for run in runs) == sorted(lost)


def test_a_model_whose_create_answer_was_lost_is_logged_once(
    tracker: Tracker, store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like a run: the store made the logged model, the answer was lost; the retry finds it."""
    from mlflow.models import Model

    create = tracker._client.create_logged_model
    lost: list[str] = []

    def create_and_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        model = create(*args, **kwargs)
        if not lost:
            lost.append(model.model_id)
            raise requests.exceptions.ConnectionError("connection reset; response lost")
        return model

    monkeypatch.setattr(tracker._client, "create_logged_model", create_and_lose_the_answer)
    folder = tmp_path / "model"
    folder.mkdir()
    Model().save(str(folder / "MLmodel"))
    (folder / "weights.txt").write_text("w")
    sweep = tracker.sweep_run("sweep", sweep_id="sw-1")
    tracker.log_model(sweep, folder, "embedder")
    assert tracker.flush(timeout=30)
    assert tracker.dropped == 0
    client = MlflowClient(store_uri)
    (model,) = client.search_logged_models([tracker.experiment_id])
    assert model.model_id == lost[0]
    assert model.status.to_int() == LoggedModelStatus.READY.to_int()


def test_batches_respect_mlflow_limits(tracker: Tracker) -> None:
    sweep = tracker.sweep_run("sweep", sweep_id="sw-1")
    params: dict[str, Any] = {
        f"group_{group}": {f"p{index}": index for index in range(50)} for group in range(5)
    }
    params["long"] = "y" * (MAX_PARAM_VAL_LENGTH + 100)
    tags = {f"tag_{index}": index for index in range(150)}
    trial = tracker.child_run(sweep, "trial-0", params=params, tags=tags)
    for step in range(100):  # 1600 metrics: more than one batch holds
        tracker.log_epoch(trial, _epoch(step), step)
    tracker.end_run(trial)
    assert tracker.flush(timeout=60)

    client = MlflowClient(tracker.tracking_uri)
    run = client.get_run(trial)
    assert len(run.data.params) == 251
    assert len(run.data.params["long"]) == MAX_PARAM_VAL_LENGTH
    assert run.data.params["long"].endswith("[truncated]")
    assert all(run.data.tags[f"tag_{index}"] == str(index) for index in range(150))
    assert _steps(client, trial, "metric_15") == list(range(100))
    assert tracker.dropped == 0


def test_flush_waits_for_everything_and_close_rejects_more(store_uri: str) -> None:
    tracker = _tracker(store_uri)
    sweep = tracker.sweep_run("sweep", sweep_id="sw-1")
    trials = [tracker.child_run(sweep, f"trial-{index}") for index in range(4)]
    for step in range(25):
        for trial in trials:
            tracker.log_epoch(trial, _epoch(step), step)
    assert tracker.flush(timeout=60)
    assert tracker.pending == 0
    client = MlflowClient(store_uri)
    for trial in trials:
        assert _steps(client, trial, "metric_7") == list(range(25))
    assert tracker.close()
    with pytest.raises(RuntimeError, match="closed"):
        tracker.log_epoch(trials[0], _epoch(99), 99)


def test_artifacts_are_staged_and_ordered_after_records(tracker: Tracker, tmp_path: Path) -> None:
    trial = tracker.child_run(tracker.sweep_run("sweep", sweep_id="sw-1"), "trial-0")
    tracker.log_epoch(trial, _epoch(0), 0)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"roc_auc": 0.9}))
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "loss.txt").write_text("1 0.5\n")
    tracker.log_artifact(trial, report)
    tracker.log_artifacts(trial, plots, artifact_path="plots")
    report.unlink()  # the tracker holds its own copy until the upload is done
    shutil.rmtree(plots)
    tracker.end_run(trial)
    assert tracker.flush(timeout=30)

    client = MlflowClient(tracker.tracking_uri)
    assert {item.path for item in client.list_artifacts(trial)} == {"report.json", "plots"}
    assert [item.path for item in client.list_artifacts(trial, "plots")] == ["plots/loss.txt"]
    local = client.download_artifacts(trial, "report.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == {"roc_auc": 0.9}


def test_a_drain_merges_each_runs_records_into_one_batch_and_flush_cuts_its_wait(
    store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a sweep's writer does for every trial: once its run is open, the run's epochs and
    tags go to the store in one ``log_batch`` though an artifact and its inputs were queued
    between them, its status after them, and its artifacts straight to where the created run
    keeps them (no ``get_run``). A drain lingers for more records, but not an opening; a
    flush writes at once."""
    from margin_tune.pipeline.tracking import writer

    monkeypatch.setattr(writer, "LINGER_S", 60.0)  # every record below joins one drain
    calls: list[tuple[str, str]] = []
    for name in ("log_batch", "get_run", "set_terminated"):
        original = getattr(MlflowClient, name)

        def counted(self: MlflowClient, *args: Any, _n: str = name, _f: Any = original) -> Any:
            calls.append((_n, str(args[0])))
            return _f(self, *args)

        monkeypatch.setattr(MlflowClient, name, counted)
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "loss.txt").write_text("1 0.5\n")
    with _tracker(store_uri, artifact_location=(tmp_path / "artifacts").as_uri()) as tracker:
        sweep = tracker.sweep_run("sweep", sweep_id="sw-merge")
        assert tracker.flush(timeout=30)
        trials = [tracker.child_run(sweep, f"t{i}", params={"i": i}, wait=False) for i in (0, 1)]
        # A run is opened without waiting out the linger (no flush here): a driver killed in
        # the meantime must leave the run for resume to find.
        client = MlflowClient(store_uri)
        deadline = time.monotonic() + 30
        while len(tracker.child_runs(sweep)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(client.search_runs([tracker.experiment_id])) == 3
        assert tracker.flush(timeout=30)
        calls.clear()
        for trial in trials:
            tracker.log_text(trial, "lr: 0.1\n", "config.yaml")
            tracker.log_inputs(trial, _dataset_records())
            tracker.log_artifacts(trial, plots, artifact_path="plots")
        for step in range(3):
            for trial in trials:
                tracker.log_epoch(trial, _epoch(step), step)
        for trial in trials:
            tracker.set_tags(trial, {"margin_tune.status": "completed"})
            tracker.end_run(trial)
        started = time.monotonic()
        assert tracker.flush(timeout=30)
        assert time.monotonic() - started < 30  # the flush did not wait out the linger
    runs = client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{sweep}'")
    assert len(runs) == 2
    for run in runs:
        run_id = run.info.run_id
        assert [name for name, of in calls if of == run_id] == ["log_batch", "set_terminated"]
        assert run.info.status == "FINISHED"
        assert run.data.params["i"] in ("0", "1")
        assert run.data.tags["margin_tune.status"] == "completed"
        assert _steps(client, run_id) == [0, 1, 2]
        assert {item.path for item in client.list_artifacts(run_id)} == {"config.yaml", "plots"}
        assert [item.path for item in client.list_artifacts(run_id, "plots")] == ["plots/loss.txt"]
        assert len(run.inputs.dataset_inputs) == 2


def test_bad_input_fails_in_the_caller_and_rejected_records_do_not_block(
    tracker: Tracker,
) -> None:
    trial = tracker.child_run(tracker.sweep_run("sweep", sweep_id="sw-1"), "trial-0")
    with pytest.raises(Exception, match="Invalid value"):
        tracker.log_epoch(trial, {"bad%name": 1.0}, 0)
    with pytest.raises(ValueError, match="status"):
        tracker.end_run(trial, "DONE")  # type: ignore[arg-type]
    tracker.log_epoch("0" * 32, _epoch(0), 0)  # no such run: the store refuses it
    tracker.log_epoch(trial, _epoch(0), 0)
    assert tracker.flush(timeout=30)
    assert tracker.dropped == len(EPOCH_KEYS)
    assert _steps(MlflowClient(tracker.tracking_uri), trial) == [0]


# ------------------------------------------------------------------------ tracking server


@pytest.fixture
def server(template_db: Path, tmp_path: Path) -> Iterator[MlflowServer]:
    store = tmp_path / "server.db"
    shutil.copy(template_db, store)
    running = MlflowServer(tmp_path, store)
    running.start()
    yield running
    running.stop()


@pytest.mark.slow
def test_records_survive_a_tracking_server_outage(
    server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "")  # restored (unset) after the test, whatever the tracker sets
        monkeypatch.delenv(name)
    tracker = _tracker(server.url, "outage", open_timeout=OPEN_TIMEOUT)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    sweep = tracker.sweep_run("sweep", sweep_id="sw-1")
    trials = [tracker.child_run(sweep, f"trial-{index}", params={"i": index}) for index in range(3)]
    for step in range(3):
        for trial in trials:
            tracker.log_epoch(trial, _epoch(step), step)
    assert tracker.flush(timeout=30)

    server.stop()
    # A trial starting now: the store does not answer, so its run is opened later and the
    # caller waits open_timeout at most, then gets an id that stands for the run.
    started = time.perf_counter()
    late = tracker.child_run(sweep, "trial-late", name="late", params={"i": 9}, tags={"k": "v"})
    assert time.perf_counter() - started < OPEN_TIMEOUT + 1.0
    started = time.perf_counter()
    for step in range(3, 8):
        for trial in trials:
            assert tracker.log_epoch(trial, _epoch(step), step)
    tracker.set_tags(sweep, {"trial_status": "3 done"})
    for trial in trials:
        tracker.end_run(trial)
    # Now the writer knows the store is down: a restored trial's run is deferred at once; the
    # epochs it replays that the store already holds (all up to 7) are not written again.
    restored = tracker.child_run(sweep, "trial-0", params={"i": 0})
    for step in range(10):
        tracker.log_epoch(late, _epoch(step), step)
        tracker.log_epoch(restored, _epoch(step), step)
    # Dataset inputs wait in the queue like every record: the late run's under its
    # provisional id; a run's inputs logged twice are stored once.
    records = _dataset_records()
    tracker.log_inputs(late, records)
    tracker.log_inputs(trials[1], records)
    tracker.log_inputs(trials[1], records)
    tracker.end_run(late)
    tracker.end_run(restored)
    assert time.perf_counter() - started < 0.5  # the caller never waits on the store
    assert not tracker.flush(timeout=0.5)
    assert tracker.pending > 0

    server.start()
    assert tracker.flush(timeout=60)
    assert tracker.close()
    assert tracker.dropped == 0

    client = MlflowClient(server.url)
    assert client.get_run(sweep).data.tags["trial_status"] == "3 done"
    children = client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{sweep}'")
    by_trial = {run.data.tags[TRIAL_ID_TAG]: run for run in children}
    assert len(children) == len(by_trial) == 4
    assert by_trial["trial-0"].info.run_id == trials[0]
    for trial in trials:
        assert client.get_run(trial).info.status == "FINISHED"
        for key in EPOCH_KEYS:
            assert _steps(client, trial, key) == list(range(10 if trial == trials[0] else 8))
    opened_late = by_trial["trial-late"]
    assert opened_late.info.run_name == "late"
    assert opened_late.info.status == "FINISHED"
    assert opened_late.data.params == {"i": "9"}
    assert opened_late.data.tags["k"] == "v"
    for key in EPOCH_KEYS:
        assert _steps(client, opened_late.info.run_id, key) == list(range(10))
    for run_id in (opened_late.info.run_id, trials[1]):
        logged = client.get_run(run_id).inputs.dataset_inputs
        assert sorted((i.dataset.digest, i.tags[0].value) for i in logged) == sorted(
            (r.digest, r.context) for r in records
        )
    assert client.get_run(trials[2]).inputs.dataset_inputs == []


NAMES = [
    "val_roc_auc",
    "margin_tune.trial_status",
    "loss/train step 1",
    "a-b.c_d",
    "bad%name",
    "semi;colon",
    "time:12",
    "",
    "/absolute",
    "../up",
    "a/../b",
    "a//b",
    ".",
    "trailing/",
    "x" * 251,
    "ünïcode_wörd",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_tracker_refuses_every_name_mlflow_refuses(name: str) -> None:
    """The caller-side check, checked against MLflow's own (private) validator as an oracle:
    what MLflow would refuse in the writer is refused in the caller, where the error helps."""
    from mlflow.utils.validation import _validate_metric_name, _validate_tag_name

    def refused(check: Any) -> bool:
        try:
            check(name)
        except Exception:
            return True
        return len(name) > 250

    mlflow_refuses = refused(_validate_metric_name) or refused(_validate_tag_name)
    ours = refused(lambda key: check_name("metric", key))
    assert ours or not mlflow_refuses
    if ours and not mlflow_refuses:  # stricter only where a Windows-read store would break
        assert ":" in name
