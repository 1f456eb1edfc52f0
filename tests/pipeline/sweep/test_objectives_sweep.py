"""``tune --objectives``, end to end: a real two-objective sweep (MAP@R up, seconds an epoch
down) logs its Pareto front as a table and a plot, and ``report`` lists it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from tiny import set_flags

from margin_tune.pipeline.analysis.pareto import pareto_front
from margin_tune.pipeline.api.config import OPTUNA_JOURNAL
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.search.objectives import parse_objectives
from margin_tune.pipeline.search.study import study_storage
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG

OBJECTIVES = "val_map_at_r:max,epoch_seconds:min"


@pytest.mark.slow
def test_a_two_objective_sweep_logs_and_reports_its_pareto_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "sweep"
    sets = set_flags("train.epochs=2")
    # The batch's P and K change the seconds an epoch as well as the quality: a real trade.
    space = tmp_path / "batch.yaml"
    space.write_text(
        "metric: val_map_at_r\n"
        "parameters:\n"
        "  margin.scheduler: {distribution: fixed, value: dams}\n"
        "  sampler.classes_per_batch: {distribution: int, low: 2, high: 8}\n"
        "  train.lr: {distribution: log_uniform, low: 0.0001, high: 0.01}\n"
    )
    code = main(
        [
            *("tune", "--space", str(space), "--trials", "5", "--out", str(out)),
            *("--objectives", OBJECTIVES, "--no-early-stopping", "--tracking-uri", uri),
            *("--experiment", "pareto", *sets),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    objectives = parse_objectives(OBJECTIVES)
    trials = pd.read_csv(out / "trials.csv")
    assert {"val_map_at_r", "epoch_seconds"} <= set(trials)
    front = pd.read_csv(out / "pareto.csv")
    expected = pareto_front(trials, objectives)
    assert list(front[TRIAL_ID_TAG]) == list(expected[TRIAL_ID_TAG]) and len(front) >= 1
    assert f"Pareto front over val_map_at_r (max), epoch_seconds (min): {len(front)} trials" in (
        printed
    )
    assert (out / "plots" / "pareto.png").stat().st_size > 10_000
    # Optuna was told both objectives of every trial.
    storage = study_storage(str(out / OPTUNA_JOURNAL))
    (name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == (trials["status"] == "completed").sum()
    assert all(len(t.values) == 2 for t in complete)
    # The sweep's run: the objectives, the front's size, the table and the plot.
    client = MlflowClient(uri)
    sweep_id = json.loads((out / "margin-tune.json").read_text())["sweep_id"]
    experiment = client.get_experiment_by_name("pareto").experiment_id
    (run,) = client.search_runs([experiment], f"tags.`margin_tune.sweep_id` = '{sweep_id}'")
    assert run.data.params["objectives"] == OBJECTIVES
    assert run.data.metrics["pareto_trials"] == len(front)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "pareto.csv" in artifacts
    assert "plots/pareto.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    # report lists the front after the trials, from the store alone.
    command = ["report", "--tracking-uri", uri, "--experiment", "pareto", "--sweep", sweep_id]
    assert main([*command, "--format", "csv"]) == 0
    text = capsys.readouterr().out
    title = f"Pareto front over val_map_at_r (max), epoch_seconds (min): {len(front)} of 5 trials"
    assert title in text
    table = pd.read_csv(io.StringIO(text.split(title, 1)[1].strip()))
    assert sorted(table["trial_id"]) == sorted(front[TRIAL_ID_TAG])
    assert table["val_map_at_r"].tolist() == pytest.approx(
        front.set_index(TRIAL_ID_TAG).loc[table["trial_id"], "val_map_at_r"].tolist()
    )
