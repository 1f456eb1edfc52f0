"""Honest exit codes: a sweep in which no trial trained its budget, and a comparison in which a
method has no winner, exit 1 with one line naming why, and their MLflow runs end FAILED."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml
from mlflow import MlflowClient

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.runtime.exit_codes import EXIT_RUNS_FAILED
from margin_tune.pipeline.sweep.session import ray_session
from margin_tune.pipeline.tracking.vocabulary import (
    KIND_TAG,
    METHOD_TAG,
    REGISTRY_ERROR_TAG,
    STAGE_TAG,
)

pytestmark = pytest.mark.slow

#: lr ≥ 1e36 makes the loss NaN in epoch 1, deterministically: every trial fails.
DIVERGING = {
    "metric": "val_map_at_r",
    "parameters": {
        "margin.scheduler": {"distribution": "fixed", "value": "constant"},
        "train.lr": {"distribution": "uniform", "low": 1.0e36, "high": 1.0e37},
    },
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    with ray_session(None, num_cpus=2):
        yield
    assert not ray.is_initialized()


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], max_results=1000)


def test_a_sweep_whose_trials_all_fail_exits_1_naming_the_first_error(
    local_ray: None, tmp_path: Path, tiny_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "diverging.yaml"
    space.write_text(yaml.safe_dump(DIVERGING))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [item for o in [*tiny_overrides, "train.epochs=2"] for item in ("--set", o)]
    code = main(
        [
            *("tune", "--space", str(space), "--trials", "2", "--tracking-uri", uri),
            *("--out", str(tmp_path / "out"), "--experiment", "failing", *sets),
        ]
    )
    assert code == EXIT_RUNS_FAILED
    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if line.startswith("margin-tune:")]
    assert "no trial completed its 2-epoch budget" in line
    assert "train_loss became nan in epoch 1" in line
    assert "2 trials: 0 completed, 0 early-stopped, 0 collapsed, 2 failed" in captured.out
    (sweep,) = [r for r in runs_of(uri, "failing") if r.data.tags.get(KIND_TAG)]
    assert sweep.info.status == "FAILED"


def test_a_comparison_with_a_method_without_winner_writes_its_tables_and_exits_1(
    local_ray: None, tmp_path: Path, tiny_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "diverging.yaml").write_text(yaml.safe_dump(DIVERGING))
    spec = tmp_path / "compare.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "methods": {"dams": "dams", "broken": "diverging.yaml"},
                "baselines": ["broken"],
                "budget": {"trials": 1, "epochs": 2},
                "searcher": "random",
                "seeds": 2,
                "set": tiny_overrides,
            }
        )
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "cmp"
    code = main(
        [
            *("compare", "--config", str(spec), "--tracking-uri", uri, "--out", str(out)),
            *("--experiment", "no-winner", "--no-early-stopping"),
            *("--register-model", "no-winner-model"),
        ]
    )
    assert code == EXIT_RUNS_FAILED
    # The reason goes to stderr, after the table and the paths on stdout.
    assert "broken: no tuning trial completed" in capsys.readouterr().err
    table = pd.read_csv(out / "table.csv").set_index("method")
    assert table.loc["broken", "splits_without_winner"] == 1
    assert table.loc["broken", "runs"] == 0
    assert table.loc["dams", "map_at_r_n"] == 2
    assert "no trial completed its budget on 1 of 1 split" in (out / "table.md").read_text()
    runs = runs_of(uri, "no-winner")
    (comparison,) = [r for r in runs if r.data.tags.get(KIND_TAG) == "comparison"]
    assert comparison.info.status == "FAILED"
    finals = [r for r in runs if r.data.tags.get(STAGE_TAG) == "final"]
    assert sorted(r.data.tags[METHOD_TAG] for r in finals) == ["dams", "dams"]
    # A comparison without a finding registers nothing, and says why.
    assert MlflowClient(uri).search_registered_models() == []
    assert "no winner for broken" in comparison.data.tags[REGISTRY_ERROR_TAG]
