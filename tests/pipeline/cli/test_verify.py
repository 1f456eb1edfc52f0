"""``margin-tune verify`` on LFW's own layout: ten folds of ``pairs.txt``, each scored with the
threshold fitted on the other nine, after a real (tiny) training on the archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_archives import write_lfw

from margin_tune.pipeline.cli.main import main

FOLDS, PEOPLE = 10, 20

TINY = (
    "dataset.name=lfw",
    "dataset.split=seeded",
    "dataset.image_size=16",
    "dataset.val_fraction=0.2",
    "model.name=cnn",
    "model.hidden_dims=[8,8]",
    "model.embedding_dim=8",
    "sampler.classes_per_batch=2",
    "sampler.samples_per_class=2",
    "train.epochs=1",
    "train.batches_per_epoch=2",
    "train.num_threads=1",
    "train.num_workers=0",
    "train.device=cpu",
)


def sets(*overrides: str) -> list[str]:
    return [item for override in overrides for item in ("--set", override)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An LFW archive of 20 people in 10 folds, and a model trained on its seeded split."""
    parent = tmp_path_factory.mktemp("lfw")
    archive = write_lfw(parent / "archive", people=PEOPLE, per_person=4, folds=FOLDS)
    run = parent / "run"
    args = ["train", "--out", str(run), *sets(f"dataset.path={archive}", *TINY)]
    assert main(args) == 0
    return archive, run


def test_ten_folds_each_with_the_others_threshold(
    tmp_path: Path, trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = trained
    out = tmp_path / "lfw.json"
    assert main(["verify", "--model", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "10 folds" in printed and "accuracy" in printed
    report = json.loads(out.read_text())
    assert report["dataset"] == "lfw"
    per_fold = PEOPLE // 2 * 2  # write_lfw: people // 2 matched and as many mismatched
    assert report["pairs_scored"] == FOLDS * per_fold
    assert [fold["fold"] for fold in report["folds"]] == list(range(FOLDS))
    assert all(fold["pairs"] == per_fold for fold in report["folds"])
    accuracies = [fold["accuracy"] for fold in report["folds"]]
    assert all(0.0 <= accuracy <= 1.0 for accuracy in accuracies)
    assert report["accuracy_mean"] == pytest.approx(sum(accuracies) / FOLDS)
    assert 0.0 <= report["roc_auc"] <= 1.0
    # Trained on this very archive: the pairs that show seen identities are counted and said.
    assert 0 < report["pairs_with_seen_identities"] <= report["pairs_scored"]
    assert "--classes test" in printed


def test_only_unseen_identities_with_classes_test(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = trained
    assert main(["verify", "--model", str(run), "--classes", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["pairs_with_seen_identities"] == 0
    assert 0 < report["pairs_scored"] < FOLDS * PEOPLE


def test_a_dataset_without_pairs_and_bad_flags_exit_2_writing_nothing(
    tmp_path: Path, trained: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    archive, run = trained
    out = tmp_path / "report.json"
    (archive / "pairs.txt").rename(archive / "pairs.moved")
    try:
        assert main(["verify", "--model", str(run), "--out", str(out)]) == 2
    finally:
        (archive / "pairs.moved").rename(archive / "pairs.txt")
    assert "dataset.name" in capsys.readouterr().err
    assert not out.exists()
    assert main(["verify", "--model", str(run), "--classes", "seen"]) == 2
    error = capsys.readouterr().err
    assert "--classes" in error and "allowed: all, test" in error
    out.write_text("a user's file\n")
    assert main(["verify", "--model", str(run), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "a user's file\n"
