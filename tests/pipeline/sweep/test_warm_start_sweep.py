"""``tune --warm-start``, end to end: a real ``constant`` sweep on one dataset seeds a ``dams``
sweep on another (the synthetic data with more noise), by its sweep id and by its directory."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from tiny import TINY, set_flags

from margin_tune.pipeline.api.config import OPTUNA_JOURNAL
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.search.study import TUNE_TRIAL_ATTR, WARM_START_ATTR, study_storage
from margin_tune.pipeline.sweep.warm_start import load_warm_start
from margin_tune.pipeline.tracking.vocabulary import KIND_TAG, SWEEP_ID_TAG, TRIAL_ID_TAG
from margin_tune.trainables.parts import load_config

EXPERIMENT = "warm"
METRIC = "val_map_at_r"


@pytest.mark.slow
def test_a_sweep_seeded_from_an_earlier_one_learns_from_its_completed_trials_for_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = set_flags("train.epochs=2")
    common = ["--tracking-uri", uri, "--experiment", EXPERIMENT, "--no-early-stopping"]
    first, second = tmp_path / "constant", tmp_path / "dams"
    # A constant margin, μ0 within dams' range: every completed trial can seed the dams sweep.
    space_file = tmp_path / "constant.yaml"
    space_file.write_text(
        "metric: val_map_at_r\n"
        "parameters:\n"
        "  margin.scheduler: {distribution: fixed, value: constant}\n"
        "  margin.initial_margin: {distribution: uniform, low: 0.1, high: 0.5}\n"
        "  train.lr: {distribution: log_uniform, low: 0.0001, high: 0.01}\n"
    )
    code = main(
        ["tune", "--space", str(space_file), "--trials", "4", "--out", str(first), *common, *sets]
    )
    assert code == 0
    capsys.readouterr()
    earlier = pd.read_csv(first / "trials.csv")
    sweep_id = json.loads((first / "margin-tune.json").read_text())["sweep_id"]
    inside = earlier[earlier["status"] == "completed"]  # no early stopping: all four
    assert len(inside) == 4
    noisy = [*sets, "--set", "dataset.noise=0.6"]
    code = main(
        [
            *("tune", "--space", "dams", "--trials", "2", "--out", str(second)),
            *("--warm-start", sweep_id, *common, *noisy),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"warm start from sweep {sweep_id} (constant): {len(inside)} completed trials" in printed
    assert "not seeded (searched here, not there): margin.target_easy_ratio" in printed
    assert "fixed differently: margin.scheduler: constant → dams" in printed
    # Another noise: other data, whose values TPE would take as this data's; said so.
    assert "note: the earlier sweep ran on other data" in printed
    assert json.loads((first / "margin-tune.json").read_text())["dataset_fingerprint"]
    assert f"; {len(inside)} more seeded from sweep {sweep_id}" in printed
    # The study: the seeds first, finished, with the earlier values; then the two new trials,
    # the only ones Tune ran (trials.csv, the budget).
    study_name = optuna.get_all_study_names(study_storage(str(second / OPTUNA_JOURNAL)))[0]
    study = optuna.load_study(
        study_name=study_name, storage=study_storage(str(second / OPTUNA_JOURNAL))
    )
    seeded = [t for t in study.trials if WARM_START_ATTR in t.user_attrs]
    ran = [t for t in study.trials if TUNE_TRIAL_ATTR in t.user_attrs]
    assert len(seeded) == len(inside) and len(ran) == 2 and len(study.trials) == len(inside) + 2
    assert sorted(t.value for t in seeded) == sorted(inside[METRIC])
    for trial in seeded:
        row = inside[inside[TRIAL_ID_TAG] == trial.user_attrs[WARM_START_ATTR].rsplit(" ", 1)[1]]
        assert trial.params == {
            "margin.initial_margin": row["config.margin.initial_margin"].item(),
            "train.lr": row["config.train.lr"].item(),
        }
    assert len(pd.read_csv(second / "trials.csv")) == 2
    manifest = json.loads((second / "margin-tune.json").read_text())
    assert len(manifest["warm_start"]["seeded"]) == len(inside)
    # The sweep run says where its seeds came from and how many.
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = [
        r
        for r in client.search_runs([experiment])
        if r.data.tags.get(KIND_TAG) == "sweep" and r.data.params.get("space") == "dams"
    ]
    assert run.data.params["warm_start.trials"] == str(len(inside))
    assert run.data.params["warm_start.shared"] == "margin.initial_margin,train.lr"
    assert run.data.metrics["trials_seeded"] == len(inside)
    assert run.data.tags[SWEEP_ID_TAG] == manifest["sweep_id"]
    # The earlier sweep's directory gives the same seeds as its sweep id.
    space = load_space("dams", load_config(overrides=list(TINY)))
    by_dir = load_warm_start(str(first), space, "tpe", experiment=EXPERIMENT, tracking_uri=uri)
    by_id = load_warm_start(sweep_id, space, "tpe", experiment=EXPERIMENT, tracking_uri=uri)
    assert [(s.params, s.value) for s in by_dir.seeded] == [
        (s.params, s.value) for s in by_id.seeded
    ]
