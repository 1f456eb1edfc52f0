"""What the sweep's Tune callbacks keep of a trial: its names and folder (and what of them Tune
saves with every trial), and its epochs in MLflow when a resume restores it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import pytest
from mlflow import MlflowClient

from margin_tune.pipeline.sweep.callback import (
    SearchedConfig,
    TrackingCallback,
    TrialNames,
    bind_tracker,
)
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG
from margin_tune.trainables.parts import load_config


def _trial(index: int) -> SimpleNamespace:
    return SimpleNamespace(
        trial_id=f"{index:08x}",
        config={"margin.initial_margin": 0.1 + index / 1000, "train.lr": 0.001},
    )


def test_the_pickled_creators_do_not_grow_with_the_trials_named() -> None:
    """Tune pickles both creators into each trial's saved state when the trial is made; the
    names given so far are a cache, rebuilt identically after unpickling."""
    names = TrialNames(SearchedConfig(load_config(None, [])), {})
    before = [len(cloudpickle.dumps(creator)) for creator in (names.name, names.dirname)]
    given = {
        trial.trial_id: (names.name(trial), names.dirname(trial))
        for trial in map(_trial, range(300))
    }
    assert [len(cloudpickle.dumps(creator)) for creator in (names.name, names.dirname)] == before
    restored = cloudpickle.loads(cloudpickle.dumps(names.dirname)).__self__
    assert {
        t.trial_id: (restored.name(t), restored.dirname(t)) for t in map(_trial, range(300))
    } == given
    assert given["00000005"] == (
        "dams μ0=0.105 target=0.95 step=0.05 lr=1e-03",
        "dams_mu0-0.105_target-0.95_step-0.05_lr-1e-03_00000005",
    )


def _tune_trial(directory: Path, epochs: list[int], index: int = 7) -> SimpleNamespace:
    """A restored trial as the callback sees it: its id, config and folder, in which Tune's
    ``result.json`` holds what the killed driver was told (``epochs``, a replay included)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"epoch": e, "train_loss": 1.0 / e, "margin": 0.1 * e}) for e in epochs]
    (directory / "result.json").write_text(
        "\n".join([*lines, '{"epoch": 9, "cut'][: len(lines) + 1])
    )
    trial = _trial(index)
    trial.local_path = str(directory)
    return trial


@pytest.mark.parametrize("held", [0, 1, 2])
def test_a_restored_trial_logs_the_epochs_its_killed_driver_never_wrote_first(
    tmp_path: Path, held: int
) -> None:
    """The killed driver's last records never reached MLflow (``held`` of its 3 epochs did);
    the restored trial reports epoch 4 first: epochs held+1..3 come from ``result.json``,
    each once, before it, and nothing the store holds is written again."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = load_config(None, [])
    trial = _tune_trial(tmp_path / "trial", [1, 2, 3, 3])
    with Tracker(uri, "gaps") as tracker:
        parent = tracker.sweep_run("sweep", sweep_id="s1")
        callback = TrackingCallback(parent, SearchedConfig(base))
        with bind_tracker(tracker):
            for epoch in range(1, held + 1):  # what the killed driver managed to write
                callback.on_trial_result(0, [], trial, {"epoch": epoch, "train_loss": 1.0 / epoch})
    with Tracker(uri, "gaps") as tracker:  # the resumed driver
        callback = TrackingCallback(parent, SearchedConfig(base))
        with bind_tracker(tracker):
            callback.on_trial_result(0, [], trial, {"epoch": 4, "train_loss": 0.25})
            callback.on_trial_result(0, [], trial, {"epoch": 5, "train_loss": 0.2})
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("gaps").experiment_id],
        f"tags.`{TRIAL_ID_TAG}` = '{trial.trial_id}'",
    )
    run_id = run.info.run_id
    history = client.get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(e, 1.0 / e) for e in range(1, 6)]
    if held < 3:
        assert [m.step for m in client.get_metric_history(run_id, "margin")] == list(
            range(held + 1, 4)
        )
