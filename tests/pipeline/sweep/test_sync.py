"""``margin-tune sync`` writes what Ray Tune's results hold into MLflow, and only that.

A finished sweep is synced twice without any change to the store; then the store loses what a
driver killed before its queue was written loses (a trial's end, and a whole trial run, removed
for good with ``mlflow gc``), and one sync brings both back as the live path wrote them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.tracking.vocabulary import (
    DATASET_TAG,
    KIND_TAG,
    SCHEDULER_TAG,
    SEED_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
)

pytestmark = pytest.mark.slow

TRIALS = 3
EPOCHS = 3
KEPT_TAGS = (TRIAL_ID_TAG, "mlflow.parentRunId", SCHEDULER_TAG, DATASET_TAG, SEED_TAG)


def trial_runs(client: MlflowClient, experiment_id: str) -> dict[str, Run]:
    runs = client.search_runs([experiment_id], max_results=1000)
    (sweep,) = [r for r in runs if r.data.tags.get(KIND_TAG) == "sweep"]
    return {
        r.data.tags[TRIAL_ID_TAG]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id
    }


def recorded(client: MlflowClient, run: Run) -> dict[str, Any]:
    """What a run says about its trial, without ids and times (a re-created run has new ones)."""
    return {
        "name": run.info.run_name,
        "status": run.info.status,
        "trial_status": run.data.tags[STATUS_TAG],
        "tags": {key: run.data.tags[key] for key in KEPT_TAGS},
        "params": run.data.params,
        "inputs": sorted(
            (item.dataset.digest, item.tags[0].value) for item in run.inputs.dataset_inputs
        ),
        "metrics": {
            key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics
        },
    }


def store_contents(client: MlflowClient, experiment_id: str) -> list[Any]:
    """Every run with its times and full histories: what a second sync may not change."""
    return sorted(
        (
            run.info.run_id,
            run.info.status,
            run.info.end_time,
            sorted(run.data.tags.items()),
            sorted(run.data.params.items()),
            sorted((i.dataset.digest, i.tags[0].value) for i in run.inputs.dataset_inputs),
            sorted(
                (key, m.step, m.timestamp, m.value)
                for key in run.data.metrics
                for m in client.get_metric_history(run.info.run_id, key)
            ),
        )
        for run in client.search_runs([experiment_id], max_results=1000)
    )


def test_sync_changes_nothing_twice_and_restores_what_the_store_lost(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    out = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [i for o in [*tiny_overrides, f"train.epochs={EPOCHS}"] for i in ("--set", o)]
    assert (
        main(
            [
                *("tune", "--space", "dams", "--trials", str(TRIALS), "--searcher", "random"),
                *("--no-early-stopping", "--out", str(out), "--tracking-uri", uri),
                *("--experiment", "sync-test", *sets),
            ]
        )
        == 0
    )
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("sync-test").experiment_id
    store = store_contents(client, experiment_id)
    assert main(["sync", str(out)]) == 0
    assert main(["sync", str(out)]) == 0
    assert store_contents(client, experiment_id) == store

    runs = trial_runs(client, experiment_id)
    assert len(runs) == TRIALS
    expected = {trial_id: recorded(client, run) for trial_id, run in runs.items()}
    assert all(len(trial["inputs"]) == 2 for trial in expected.values())  # training, validation
    unended, lost, intact = sorted(runs)
    # The driver died before the trial's end reached the store ...
    client.update_run(runs[unended].info.run_id, "RUNNING")
    client.set_tag(runs[unended].info.run_id, STATUS_TAG, "running")
    # ... and before another trial's run was ever created.
    client.delete_run(runs[lost].info.run_id)
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    subprocess.run(
        [mlflow, "gc", "--backend-store-uri", uri, "--run-ids", runs[lost].info.run_id],
        check=True,
        capture_output=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    assert sorted(trial_runs(client, experiment_id)) == [unended, intact]

    assert main(["sync", str(out)]) == 0
    synced = trial_runs(client, experiment_id)
    assert {trial_id: recorded(client, run) for trial_id, run in synced.items()} == expected
    assert synced[unended].info.run_id == runs[unended].info.run_id
    assert synced[intact].info.end_time == runs[intact].info.end_time
    store = store_contents(client, experiment_id)
    assert main(["sync", str(out)]) == 0
    assert store_contents(client, experiment_id) == store


def test_sync_refuses_a_directory_without_a_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sync", str(tmp_path)]) == 2
    assert "DIR" in capsys.readouterr().err
