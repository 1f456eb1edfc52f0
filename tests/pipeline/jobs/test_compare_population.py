"""``compare`` with a method tuned by population-based training: the population spends the
budget an N-trial sweep may, its winner is the learned schedule, and every re-training replays
that schedule (μ and learning rate per epoch) from scratch with seeds no member used. Real Ray,
Optuna and MLflow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.jobs.compare.run import BEST_CONFIGS_FILE, split_dir
from margin_tune.pipeline.sweep.population import SCHEDULE_FILE
from margin_tune.pipeline.tracking.vocabulary import METHOD_TAG, STAGE_TAG
from margin_tune.trainables.metric_names import LEARNING_RATE, MARGIN

pytestmark = pytest.mark.slow

EPOCHS = 4
MEMBERS = 4


def test_a_population_methods_schedule_is_replayed_by_its_retrainings(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "compare.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "methods": {
                    "pbt": {"space": "dams", "population": {"perturbation_interval": 1}},
                    "constant": "constant",
                },
                "budget": {"trials": MEMBERS, "epochs": EPOCHS},
                "searcher": "random",
                "seeds": 2,
                "set": [*tiny_overrides, "collapse.enabled=false"],
            }
        )
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "cmp"
    code = main(
        [
            *("compare", "--config", str(spec), "--tracking-uri", uri, "--out", str(out)),
            *("--experiment", "pbt-compare", "--no-early-stopping", "-q"),
        ]
    )
    assert code == 0
    tuning = pd.read_csv(out / "tuning.csv").set_index("method")
    # The population spent what the searched method may: members x epochs, all completed.
    assert tuning.loc["pbt", "searcher"] == "pbt"
    assert tuning.loc["pbt", "trials"] == MEMBERS
    assert tuning.loc["pbt", "trial_epochs"] == MEMBERS * EPOCHS
    assert tuning.loc["constant", "trial_epochs"] == MEMBERS * EPOCHS
    assert tuning.loc["pbt", "chosen_epochs"] == EPOCHS

    # The winner is the learned schedule, replayed: not the best member's last values.
    schedule = pd.read_csv(split_dir(out, 0) / "sweeps" / "pbt" / SCHEDULE_FILE)
    assert schedule["epoch"].tolist() == list(range(1, EPOCHS + 1))
    chosen = yaml.safe_load((split_dir(out, 0) / BEST_CONFIGS_FILE).read_text())
    assert chosen["pbt"]["margin"]["scheduler"] == "replay"
    assert chosen["pbt"]["margin"]["schedule"] == pytest.approx(schedule["margin"].tolist())
    assert chosen["pbt"]["train"]["lr_schedule"] == pytest.approx(schedule["train.lr"].tolist())
    assert chosen["constant"]["margin"]["scheduler"] == "constant"

    # Every re-training of the method trained each epoch at the schedule's μ and rate, with a
    # seed no member trained with.
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs.loc[runs["method"] == "pbt", "seed"]) == [1, 2]
    assert runs.loc[runs["method"] == "pbt", "test_map_at_r"].notna().all()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("pbt-compare").experiment_id
    finals = client.search_runs(
        [experiment],
        f"tags.`{STAGE_TAG}` = 'final' and tags.`{METHOD_TAG}` = 'pbt'",
    )
    assert len(finals) == 2

    def history(run_id: str, key: str) -> list[float]:
        points = client.get_metric_history(run_id, key)
        return [m.value for m in sorted(points, key=lambda m: m.step)]

    for run in finals:
        assert run.data.params["margin.scheduler"] == "replay"
        assert history(run.info.run_id, MARGIN) == pytest.approx(schedule["margin"].tolist())
        assert history(run.info.run_id, LEARNING_RATE) == pytest.approx(
            schedule["train.lr"].tolist()
        )
    # The replayed schedule is compared with the baseline like any scheduler.
    comparisons = pd.read_csv(out / "comparisons.csv")
    primary = comparisons[comparisons["role"] == "primary"]
    assert primary[["scheduler", "baseline"]].values.tolist() == [["pbt", "constant"]]
