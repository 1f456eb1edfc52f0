"""Real Ray Tune sweeps with Optuna and ASHA, recorded in a real MLflow store (sqlite, tmp dir)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import ray
from mlflow import MlflowClient

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.search.space import parse_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep
from margin_tune.pipeline.sweep.session import ray_session
from margin_tune.pipeline.sweep.tuner import run_sweep
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    BEST_TRIAL_TAG,
    DATASET_TAG,
    ERROR_TAG,
    KIND_TAG,
    METHOD_TAG,
    SCHEDULER_TAG,
    STAGE_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.metric_names import EPOCH_COLUMNS, EVALUATION_METRICS
from margin_tune.trainables.parts import load_config

pytestmark = pytest.mark.slow

EPOCHS = 4
#: lr 1e-7 barely moves the network, 3e-3 trains it: trials differ enough for ASHA to act.
SPACE = {
    "metric": "val_roc_auc",
    "mode": "max",
    "parameters": {
        "margin.scheduler": {"distribution": "fixed", "value": "dams"},
        "train.lr": {"distribution": "categorical", "choices": [0.003, 1.0e-7]},
        "margin.target_easy_ratio": {"distribution": "uniform", "low": 0.8, "high": 0.99},
    },
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    with ray_session(None, num_cpus=2):
        yield
    assert not ray.is_initialized()


@pytest.fixture
def base(tiny_overrides: list[str]) -> Config:
    return load_config(overrides=[*tiny_overrides, f"train.epochs={EPOCHS}"])


def child_runs(client: MlflowClient, experiment_id: str, parent: str) -> list:
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )


def asha_expected_stops(histories: dict[str, list[float]], order: list[str]) -> set[str]:
    """ASHA (one bracket, grace 1, reduction 2, max_t 4) replayed from the logged metrics.

    Rungs sit at epochs 1 and 2; a trial reaching a rung continues only when its value is at
    least the (1 − 1/rf) percentile of every value recorded at that rung so far, itself included.
    Trials run one at a time, so the order they started in is the order they reach each rung.
    """
    recorded: dict[int, list[float]] = {1: [], 2: []}
    stopped = set()
    for trial in order:
        for rung in (1, 2):
            values = histories[trial]
            if len(values) < rung:
                break
            recorded[rung].append(values[rung - 1])
            cutoff = np.nanpercentile(recorded[rung], 50)
            if values[rung - 1] < cutoff:
                stopped.add(trial)
                break
    return stopped


def test_sweep_records_one_child_run_per_trial_with_history(
    local_ray: None, base: Config, tmp_path: Path
) -> None:
    trials = 6
    space = parse_space(SPACE, base, name="asha-test")
    options = SweepOptions(
        trials=trials,
        concurrency=1,
        searcher="random",
        # Random search with seed 4 draws lr 3e-3 three times before the first 1e-7; any seed
        # passes the replay check below, this one also guarantees that ASHA has work to do.
        seed=4,
        grace_period=1,
        reduction_factor=2,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    plan = plan_sweep("asha-test", base, space, options, tmp_path / "out")
    with Tracker(options.tracking_uri, "sweep-test") as tracker:
        result = run_sweep(plan, tracker)
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name("sweep-test")
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["margin_tune.sweep_id"] == plan.sweep_id
    assert parent.data.params["searcher"] == "random"
    children = child_runs(client, experiment.experiment_id, result.parent_run_id)
    assert len(children) == trials == len(result.trials)
    assert {run.data.tags[TRIAL_ID_TAG] for run in children} == set(result.trials[TRIAL_ID_TAG])

    histories: dict[str, list[float]] = {}
    for run in children:
        tags, params = run.data.tags, run.data.params
        assert tags[SCHEDULER_TAG] == "dams" and tags[DATASET_TAG] == "synthetic"
        assert params["margin.scheduler"] == "dams"
        assert float(params["train.lr"]) in (0.003, 1e-7)
        assert params["train.epochs"] == str(EPOCHS)
        history = client.get_metric_history(run.info.run_id, "val_roc_auc")
        steps = [m.step for m in history]
        assert steps == sorted(set(steps)) and steps[0] == 1
        for column in EPOCH_COLUMNS:
            assert column in run.data.metrics
        assert run.data.metrics["epoch"] == len(steps)  # what report reads, history unread
        status = tags[STATUS_TAG]
        assert status == ("completed" if len(steps) == EPOCHS else "early_stopped")
        assert run.info.status == "FINISHED"
        histories[tags[TRIAL_ID_TAG]] = [m.value for m in history]

    ordered = sorted(children, key=lambda run: run.info.start_time)
    start_order = [run.data.tags[TRIAL_ID_TAG] for run in ordered]
    expected = asha_expected_stops(histories, start_order)
    stopped = {t for t, values in histories.items() if len(values) < EPOCHS}
    assert stopped == expected
    assert stopped, "the lr 1e-7 trials must fall behind and be stopped"

    # The reported best is the arg-max of the logged metric at each trial's last epoch.
    last = {trial: values[-1] for trial, values in histories.items()}
    assert last[result.best[TRIAL_ID_TAG]] == max(last.values())  # ties: any of them
    assert parent.data.metrics["best_val_roc_auc"] == pytest.approx(max(last.values()))
    assert parent.data.tags[BEST_TRIAL_TAG] == result.best[TRIAL_ID_TAG]


def test_tune_command_end_to_end(
    local_ray: None, tmp_path: Path, tiny_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "sweep"
    sets = [item for o in [*tiny_overrides, "train.epochs=3"] for item in ("--set", o)]
    code = main(
        [
            *("tune", "--space", "constant", "--trials", "3", "--tracking-uri", uri),
            *("--out", str(out), "--experiment", "cli-test", "--grace-period", "1", *sets),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "best: constant " in printed and "3 trials: " in printed
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and set(trials["status"]) <= {"completed", "early_stopped"}
    assert {p.name for p in (out / "plots").iterdir()} >= {"margin.png", "val_map_at_r.png"}
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cli-test")
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`margin_tune.kind` = 'sweep'"
    )
    assert len(parents) == 1
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"plots", "space", "trials.csv"} <= artifacts


def test_compare_yields_every_method_and_seed_and_a_complete_table(
    local_ray: None, tmp_path: Path, tiny_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "compare.yaml"
    spec.write_text(
        "methods: {dams: dams, constant: constant}\n"
        "budget: {trials: 2, epochs: 2}\n"
        "searcher: random\n"
        "seeds: 3\n"
        "set: [" + ", ".join(json.dumps(o) for o in tiny_overrides) + "]\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "cmp"
    code = main(
        [
            *("compare", "--config", str(spec), "--tracking-uri", uri, "--out", str(out)),
            *("--experiment", "compare-test", "--no-early-stopping"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(zip(runs["method"], runs["seed"], strict=True)) == [
        (m, s) for m in ("constant", "dams") for s in range(1, 4)
    ]
    table = pd.read_csv(out / "table.csv")
    assert list(table["method"]) == ["dams", "constant"]
    for metric in EVALUATION_METRICS:
        assert table[f"{metric}_n"].tolist() == [3, 3]
        for method, row in table.set_index("method").iterrows():
            assert row[f"{metric}_mean"] == pytest.approx(
                runs.loc[runs["method"] == method, f"test_{metric}"].mean()
            )
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert set(comparisons["scheduler"]) == {"dams"}
    assert set(comparisons["baseline"]) == {"constant"}
    assert "p-values are indicative" not in (out / "table.md").read_text()

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("compare-test")
    (comparison,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`margin_tune.kind` = 'comparison'"
    )
    nested = child_runs(client, experiment.experiment_id, comparison.info.run_id)
    sweeps = [r for r in nested if r.data.tags.get(KIND_TAG) == "sweep"]
    finals = [r for r in nested if r.data.tags.get(STAGE_TAG) == "final"]
    assert len(sweeps) == 2 and len(finals) == 6
    for sweep in sweeps:
        assert len(child_runs(client, experiment.experiment_id, sweep.info.run_id)) == 2
    for final in finals:
        assert "test_roc_auc" in final.data.metrics
        assert final.data.tags[METHOD_TAG] in ("dams", "constant")

    # Every run records its data as MLflow dataset inputs: a tuning trial the training and
    # validation classes, a re-training the test classes too; one split, so one digest each.
    trials = [
        t
        for sweep in sweeps
        for t in child_runs(client, experiment.experiment_id, sweep.info.run_id)
    ]
    seen: dict[str, set[str]] = {}
    for run, contexts in [
        (comparison, ["training", "validation", "test"]),
        *((sweep, ["training", "validation"]) for sweep in sweeps),
        *((trial, ["training", "validation"]) for trial in trials),
        *((final, ["training", "validation", "test"]) for final in finals),
    ]:
        logged = run.inputs.dataset_inputs
        assert sorted(i.tags[0].value for i in logged) == sorted(contexts), run.info.run_name
        for item in logged:
            assert item.dataset.name == "synthetic" and item.dataset.source_type == "code"
            seen.setdefault(item.tags[0].value, set()).add(item.dataset.digest)
    # The pictures: one ROC plot of the methods, one test-class map per re-training, each
    # map also in its run.
    assert (out / "roc.png").is_file()
    maps = sorted(path.name for path in (out / "maps").glob("*.png"))
    assert maps == [f"{m}_seed{s}.png" for m in ("constant", "dams") for s in range(1, 4)]
    for final in finals:
        names = [a.path for a in client.list_artifacts(final.info.run_id)]
        assert "embedding_map.png" in names, names
    assert {context: len(digests) for context, digests in seen.items()} == {
        "training": 1,
        "validation": 1,
        "test": 1,
    }


def test_failing_trials_are_recorded_and_the_sweep_goes_on(
    local_ray: None, base: Config, tmp_path: Path
) -> None:
    """lr 1e37 makes the loss NaN in epoch 1 (deterministically): that trial fails, others run."""
    space = parse_space(
        {
            "parameters": {
                "margin.scheduler": {"distribution": "fixed", "value": "constant"},
                "train.lr": {"distribution": "categorical", "choices": [0.003, 1.0e37]},
            }
        },
        base,
        name="failing",
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    options = SweepOptions(
        trials=4,
        concurrency=1,
        searcher="random",
        seed=1,  # random search draws [1e37, 1e37, 0.003, 1e37]: failures before and after
        storage=storage,
        early_stopping=False,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    plan = plan_sweep("failing", base, space, options, tmp_path / "out")
    with Tracker(options.tracking_uri, "failing-test") as tracker:
        result = run_sweep(plan, tracker)
    assert len(result.trials) == 4
    client = MlflowClient(options.tracking_uri)
    experiment = client.get_experiment_by_name("failing-test")
    children = child_runs(client, experiment.experiment_id, result.parent_run_id)
    assert len(children) == 4
    failed = [r for r in children if float(r.data.params["train.lr"]) > 1]
    healthy = [r for r in children if float(r.data.params["train.lr"]) < 1]
    assert len(failed) == 3 and len(healthy) == 1
    for run in failed:
        assert run.info.status == "FAILED"
        assert run.data.tags[STATUS_TAG] == "failed"
        assert "train_loss became nan in epoch 1" in run.data.tags[ERROR_TAG]
    for run in healthy:
        assert run.info.status == "FINISHED" and run.data.tags[STATUS_TAG] == "completed"
    assert set(result.trials.loc[result.trials["status"] == "failed", "config.train.lr"]) == {1e37}
    assert float(result.best["config.train.lr"]) == 0.003
    # The searcher was told: Optuna holds the failures as FAIL, not as good results.
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    states = sorted(trial.state.name for trial in study.trials)
    assert states == ["COMPLETE", "FAIL", "FAIL", "FAIL"]
