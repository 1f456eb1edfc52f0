"""A sweep whose driver is SIGKILLed resumes: N trials end, each recorded once, no step twice,
and its Optuna study, in the output directory's RDB, holds each trial once with its value."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from margin_tune.pipeline.api.config import OPTUNA_JOURNAL
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.outputs.manifest import read_manifest
from margin_tune.pipeline.search.study import TUNE_TRIAL_ATTR, study_storage
from margin_tune.pipeline.tracking.vocabulary import KIND_TAG, STATUS_TAG, TRIAL_ID_TAG

pytestmark = pytest.mark.slow

TRIALS = 4
EPOCHS = 5
EXECUTABLE = Path(sys.executable).with_name("margin-tune")


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_resume_after_sigkill_finishes_exactly_the_planned_trials(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SQLite store's default artifact root is ./mlruns of the working directory: the
    # driver (which inherits it) and the resume write theirs under tmp_path, not the checkout.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = tmp_path / "driver.log"
    sets = [i for o in [*tiny_overrides, f"train.epochs={EPOCHS}"] for i in ("--set", o)]
    command = [
        *(str(EXECUTABLE), "tune", "--space", "dams", "--trials", str(TRIALS)),
        *("--concurrency", "2", "--no-early-stopping", "--searcher", "random"),
        *("--checkpoint-interval", "0"),  # unfinished trials resume mid-way
        *("--out", str(out), "--tracking-uri", uri, "--experiment", "resume-test", *sets),
    ]
    with log.open("w") as handle:
        driver = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(
            lambda: log.read_text().count("]  completed") >= 2,
            timeout=240,
            what="two finished trials",
        )
    finally:
        # The whole process group: the driver and the local Ray it started.
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert log.read_text().count("]  completed") < TRIALS, "killed too late to test resume"

    assert main(["resume", str(out)]) == 0

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("resume-test")
    runs = client.search_runs([experiment.experiment_id])
    (sweep,) = [r for r in runs if r.data.tags.get(KIND_TAG) == "sweep"]
    assert sweep.info.status == "FINISHED"
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    finished = [r for r in trials if r.data.tags.get(STATUS_TAG) == "completed"]
    assert len(finished) == TRIALS
    assert len({r.data.tags[TRIAL_ID_TAG] for r in finished}) == TRIALS
    # Trials that existed only in the killed driver are kept but closed, never left RUNNING.
    for run in trials:
        assert run.info.status in ("FINISHED", "KILLED")
        if run.info.status == "KILLED":
            assert run.data.tags[STATUS_TAG] == "abandoned"
    for run in finished:
        for key in ("val_roc_auc", "margin", "train_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(1, EPOCHS + 1)), (key, steps)
    configs = {
        tuple(sorted((k, v) for k, v in r.data.params.items() if k.startswith("margin.")))
        for r in finished
    }
    assert len(configs) == TRIALS, "a finished trial was run a second time"

    # The study outlived the killed driver in DIR/optuna-journal.log, ahead of Tune's snapshot: each
    # counted trial is told once, with the value MLflow recorded, and none is left RUNNING (one
    # handed out after the snapshot and never run is told FAIL on resume). One handed out after
    # the snapshot that also finished before the kill stays COMPLETE (Optuna cannot undo it),
    # but its run is the abandoned one: the sweep counts only its planned trials.
    storage = read_manifest(out, ("tune",))["options"]["storage"]
    assert storage == str((out / OPTUNA_JOURNAL).resolve())
    (summary,) = optuna.get_all_study_summaries(study_storage(storage))
    study = optuna.load_study(study_name=summary.study_name, storage=study_storage(storage))
    assert not study.get_trials(states=(TrialState.RUNNING,))
    counted = {r.data.tags[TRIAL_ID_TAG] for r in finished}
    abandoned = {r.data.tags[TRIAL_ID_TAG] for r in trials if r.info.status == "KILLED"}
    # A trial killed between Optuna's ask and its attribute has none (and is told FAIL).
    owned = [t for t in study.trials if t.user_attrs.get(TUNE_TRIAL_ATTR) in counted]
    assert Counter(t.state for t in owned) == {TrialState.COMPLETE: TRIALS}
    numbers = {t.number for t in owned}
    for extra in study.trials:
        if extra.number not in numbers and extra.state != TrialState.FAIL:
            assert extra.user_attrs.get(TUNE_TRIAL_ATTR) in abandoned, extra
    told = sorted(round(t.value, 6) for t in owned)
    recorded = sorted(round(r.data.metrics["val_map_at_r"], 6) for r in finished)
    assert told == recorded
