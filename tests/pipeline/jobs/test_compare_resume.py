"""A comparison whose process is SIGKILLed during its re-trainings resumes without duplicates.

Killed once one re-training has finished (so every sweep has finished and the re-trainings are
half done), ``margin-tune resume`` must run no finished sweep trial or re-training again, keep
one MLflow run per trial and per (method, seed), re-open the comparison's run, and print a
complete table. A ``sync`` afterwards changes nothing in the store.
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
from margin_tune.pipeline.tracking.vocabulary import KIND_TAG, METHOD_TAG, STAGE_TAG, STATUS_TAG

pytestmark = pytest.mark.slow

TRIALS = 2
EPOCHS = 4
SEEDS = 3
METHODS = ("constant", "dams")
EXECUTABLE = Path(sys.executable).with_name("margin-tune")


def finished_retrainings(out: Path) -> dict[Path, str]:
    """result.json of each re-training whose last epoch (with its test metrics) was reported."""
    found = {}
    for path in (out / "splits" / "0" / "final").glob("*/result.json"):
        text = path.read_text()
        if "test_roc_auc" in text:
            found[path] = text
    return found


def test_compare_killed_during_retrainings_resumes_without_duplicates(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    out = tmp_path / "compare"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "compare.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "set": [*tiny_overrides, "collapse.enabled=false", "train.batches_per_epoch=30"],
                "methods": {method: method for method in METHODS},
                "baselines": ["constant"],
                "budget": {"trials": TRIALS, "epochs": EPOCHS},
                "searcher": "random",
                "seeds": SEEDS,
            }
        )
    )
    command = [
        *(str(EXECUTABLE), "compare", "--config", str(config), "--concurrency", "1"),
        *("--no-early-stopping", "--out", str(out), "--tracking-uri", uri),
        *("--experiment", "compare-resume"),
    ]
    finished_before = kill_once_an_end_is_snapshotted(
        command,
        tmp_path / "driver.log",
        out / "splits" / "0" / "final",
        lambda: finished_retrainings(out),
    )
    assert len(finished_before) < len(METHODS) * SEEDS, "killed too late to test resume"
    total = len(METHODS) * SEEDS
    print(f"re-trainings finished before the kill: {len(finished_before)} of {total}")

    assert main(["resume", str(out)]) == 0

    # Finished re-trainings were not run again: Ray appended nothing to their results.
    for path, text in finished_before.items():
        assert path.read_text() == text
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("compare-resume").experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    (comparison,) = [r for r in runs if r.data.tags.get(KIND_TAG) == "comparison"]
    assert comparison.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == comparison.info.run_id]
    sweeps = [r for r in children if r.data.tags.get(KIND_TAG) == "sweep"]
    assert sorted(r.info.run_name for r in sweeps) == sorted(METHODS)
    for sweep in sweeps:
        assert sweep.info.status == "FINISHED"
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
        assert [r.data.tags[STATUS_TAG] for r in trials] == ["completed"] * TRIALS
    finals = [r for r in children if r.data.tags.get(STAGE_TAG) == "final"]
    assert sorted((r.data.tags[METHOD_TAG], int(r.data.params["seed"])) for r in finals) == sorted(
        (method, seed) for method in METHODS for seed in range(1, SEEDS + 1)
    )
    for run in [*finals, *(r for r in runs if r not in finals and STATUS_TAG in r.data.tags)]:
        assert run.info.status == "FINISHED"
        assert run.data.tags[STATUS_TAG] == "completed"
        for key in ("val_roc_auc", "margin", "train_loss"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(1, EPOCHS + 1)), (key, steps)
    for run in finals:
        assert "test_roc_auc" in run.data.metrics

    table = pd.read_csv(out / "table.csv")
    assert list(table["method"]) == list(METHODS)
    assert list(table["runs"]) == [SEEDS] * len(METHODS)
    assert list(table["failed"]) == [0] * len(METHODS)
    assert table["roc_auc_mean"].notna().all()
    assert (table["roc_auc_n"] == SEEDS).all()

    before = store_contents(client, experiment_id)
    assert main(["sync", str(out)]) == 0
    assert store_contents(client, experiment_id) == before
