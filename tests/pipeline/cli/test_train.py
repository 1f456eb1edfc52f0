"""``margin-tune train`` as a user runs it: files written, bad input refused with exit 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from margin_tune.pipeline.cli.main import main
from margin_tune.trainables.metric_names import EPOCH_COLUMNS

#: The installed console script, next to the interpreter running the tests.
EXECUTABLE = Path(sys.executable).with_name("margin-tune")


def margin_tune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXECUTABLE), *args], capture_output=True, text=True, timeout=300)


def with_sets(overrides: list[str]) -> list[str]:
    return [item for override in overrides for item in ("--set", override)]


def test_train_writes_config_metrics_summary_and_embeddings(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    out = tmp_path / "run"
    done = margin_tune("train", "--out", str(out), "--save-embeddings", *with_sets(tiny_overrides))
    assert done.returncode == 0, done.stderr
    assert "epoch   3/3" in done.stdout
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["epochs"] == 3 and config["margin"]["scheduler"] == "dams"
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert list(rows[0]) == list(EPOCH_COLUMNS)
    summary = json.loads((out / "summary.json").read_text())
    assert 0.5 < summary["test_roc_auc"] <= 1.0
    assert set(summary["reference"]) == {"raw_features", "untrained"}
    embeddings = np.load(out / "test_embeddings.npz", allow_pickle=False)
    assert embeddings["X"].shape == (len(embeddings["y"]), 16)


def test_same_seed_same_metrics_csv(tmp_path: Path, tiny_overrides: list[str]) -> None:
    outputs = []
    for name in ("a", "b"):
        assert main(["train", "--out", str(tmp_path / name), *with_sets(tiny_overrides)]) == 0
        with (tmp_path / name / "metrics.csv").open() as handle:
            outputs.append(
                [
                    {k: v for k, v in r.items() if k != "epoch_seconds"}
                    for r in csv.DictReader(handle)
                ]
            )
    assert outputs[0] == outputs[1]


def test_existing_non_empty_out_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = margin_tune("train", "--out", str(out), "--set", "train.epochs=1")
    assert done.returncode == 2, done.stderr
    assert "already exists and is not empty" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "margin.target_easy_ratio=1.3"], "margin.target_easy_ratio: must be in (0, 1]"),
        (["--set", "margin.scheduler=cosine"], "margin.scheduler: unknown value 'cosine'"),
        (["--set", "dataset.name=digits"], "dataset.val_fraction"),
        (["--set", "sampler.classes_per_batch=64"], "sampler.classes_per_batch"),
        (["--set", "model.name=cnn"], "model.name"),
        (["--config", "/nonexistent/config.yaml"], "file not found"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    assert main(["train", "--out", str(out), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
