"""``margin-tune ablate`` end to end, with a SIGKILL halfway and ``resume``.

A nested grid (dams with two targets, and constant) × 2 seeds runs as real Ray Tune trials
recorded in MLflow. The driver is killed once a trial has finished; ``resume`` must run no
finished trial again and leave exactly one run per (cell, seed) under one parent, each with its
per-epoch history and test metrics; the tables cover every cell; ``sync`` then changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from harness import kill_once_an_end_is_snapshotted, store_contents
from mlflow import MlflowClient

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.tracking.vocabulary import (
    BEST_CELL_TAG,
    CELL_TAG,
    KIND_TAG,
    STAGE_TAG,
    STATUS_TAG,
)

pytestmark = pytest.mark.slow

EPOCHS = 4
SEEDS = 2
CELLS = ("dams target_easy_ratio=0.9", "dams target_easy_ratio=0.97", "constant")
EXECUTABLE = Path(sys.executable).with_name("margin-tune")


def finished_trials(out: Path) -> dict[Path, str]:
    """result.json of each trial whose last epoch (with its test metrics) was reported."""
    return {
        path: path.read_text()
        for path in (out / "tune").glob("*/result.json")
        if "test_roc_auc" in path.read_text()
    }


def test_ablation_killed_halfway_resumes_to_one_run_per_cell_and_seed(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "metric": "val_map_at_r",
                "seeds": SEEDS,
                "factors": {
                    "margin.scheduler": {
                        "dams": {"margin.target_easy_ratio": [0.9, 0.97]},
                        "constant": {},
                    }
                },
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "ablation"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [*tiny_overrides, f"train.epochs={EPOCHS}", "collapse.enabled=false"]
    command = [
        *(str(EXECUTABLE), "ablate", "--grid", str(grid), "--concurrency", "1"),
        *(item for override in overrides for item in ("--set", override)),
        *("--out", str(out), "--tracking-uri", uri, "--experiment", "ablate-test"),
    ]
    finished_before = kill_once_an_end_is_snapshotted(
        command, tmp_path / "driver.log", out / "tune", lambda: finished_trials(out)
    )
    assert len(finished_before) < len(CELLS) * SEEDS, "killed too late to test resume"

    assert main(["resume", str(out)]) == 0

    for path, text in finished_before.items():
        assert path.read_text() == text, f"{path.parent.name} ran again"
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("ablate-test").experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get(KIND_TAG) == "ablation"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["cells"] == str(len(CELLS))
    assert parent.data.tags[BEST_CELL_TAG] in CELLS
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted((r.data.tags[CELL_TAG], r.data.params["seed"]) for r in trials) == sorted(
        (cell, str(seed)) for cell in CELLS for seed in range(SEEDS)
    )
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags[STATUS_TAG] == "completed"
        assert run.data.tags[STAGE_TAG] == "ablation"
        assert run.info.run_name == f"{run.data.tags[CELL_TAG]} seed={run.data.params['seed']}"
        for key in ("val_roc_auc", "margin", "easy_ratio"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(1, EPOCHS + 1)), (key, steps)
        assert "test_roc_auc" in run.data.metrics
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id, "ablation")}
    assert {"ablation/cells.csv", "ablation/main_effects.png", "ablation/table.md"} <= artifacts

    cells = pd.read_csv(out / "cells.csv")
    assert list(cells["cell"]) == list(CELLS)
    assert list(cells["test_roc_auc_n"]) == [SEEDS] * len(CELLS)
    assert cells["test_roc_auc_mean"].between(0.5, 1.0).all()
    effects = pd.read_csv(out / "main_effects.csv")
    assert list(effects["factor"]) == ["margin.scheduler"] * 2 + ["margin.target_easy_ratio"] * 2
    assert list(effects["cells"]) == [2, 1, 1, 1]
    runs_table = pd.read_csv(out / "runs.csv")
    assert len(runs_table) == len(CELLS) * SEEDS
    assert set(runs_table["run_id"]) == {r.info.run_id for r in trials}

    before = store_contents(client, experiment_id)
    assert main(["sync", str(out)]) == 0
    assert store_contents(client, experiment_id) == before
