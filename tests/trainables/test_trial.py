"""One trial end to end: determinism, resume, stopping, and what each epoch reports."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from margin_tune.trainables.config import Config
from margin_tune.trainables.metric_names import EPOCH_COLUMNS
from margin_tune.trainables.trial import (
    EpochReport,
    TrainingDivergedError,
    Trial,
    train,
)


def test_history_has_every_column_and_sane_values(tiny_config: Config) -> None:
    result = train(tiny_config)
    assert result.stop_reason == "completed"
    assert [row["epoch"] for row in result.history] == [1.0, 2.0, 3.0]
    for row in result.history:
        assert list(row) == list(EPOCH_COLUMNS)
        ratios = row["easy_ratio"] + row["semihard_ratio"] + row["hard_ratio"]
        assert ratios == pytest.approx(1.0)
        assert row["valid_triplets"] > 0
        assert row["effective_margin_p10"] <= row["effective_margin_p50"]
        assert row["effective_margin_p50"] <= row["effective_margin_p90"]
        assert 0.0 <= row["val_roc_auc"] <= 1.0
        assert row["val_pairs"] == 96 * 95 / 2  # every pair of 6 validation classes of 16
        assert 0 <= row["val_false_accepts_at_far_1e-3"] <= 1e-3 * row["val_pairs"]
    assert result.test_metrics is None


def test_margin_column_is_the_margin_used_during_the_epoch(tiny_config: Config) -> None:
    # target 0.01: every epoch is "easy enough", so dams raises μ after each epoch.
    config = replace(
        tiny_config, margin=replace(tiny_config.margin, target_easy_ratio=0.01, step_size=0.1)
    )
    margins = [row["margin"] for row in train(config).history]
    assert margins == pytest.approx([0.2, 0.3, 0.4])


def test_same_seed_gives_identical_history(tiny_config: Config) -> None:
    first = train(tiny_config).history
    second = train(tiny_config).history
    strip = [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in first]
    assert strip == [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in second]
    other = train(replace(tiny_config, seed=1)).history
    assert other[-1]["train_loss"] != first[-1]["train_loss"]


def test_resume_from_any_epoch_equals_uninterrupted(tiny_config: Config, tmp_path) -> None:
    config = replace(tiny_config, train=replace(tiny_config.train, epochs=4))
    reference = train(config).history
    saved: dict[int, dict] = {}

    def stop_after_two(report: EpochReport) -> bool:
        path = tmp_path / f"epoch{report.epoch}.pt"
        torch.save(report.checkpoint(), path)
        saved[report.epoch] = torch.load(path, weights_only=True)
        return report.epoch == 2

    interrupted = train(config, stop_after_two)
    assert interrupted.stop_reason == "stopped"
    assert len(interrupted.history) == 2
    resumed = train(config, checkpoint=saved[2]).history

    def comparable(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]

    assert comparable(resumed) == comparable(reference)


def test_a_restore_keeps_the_moments_and_mu_but_takes_its_configs_hyperparameters(
    tiny_config: Config,
) -> None:
    """What population-based training needs: a copy of a better trial, perturbed values."""
    config = tiny_config
    first = Trial(replace(config, train=replace(config.train, lr=1e-3)))
    first.run(lambda report: report.epoch == 2)
    state = first.state_dict()
    perturbed = replace(
        config,
        train=replace(config.train, lr=4e-3),
        margin=replace(config.margin, target_easy_ratio=0.5),
    )
    copy = Trial(perturbed)
    copy.load_state_dict(state)
    assert [group["lr"] for group in copy.optimizer.param_groups] == [4e-3]
    # The moments, μ and the epoch are the checkpoint's.
    moments = [copy.optimizer.state[p]["exp_avg"] for p in copy.model.parameters()]
    originals = [first.optimizer.state[p]["exp_avg"] for p in first.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(moments, originals, strict=True))
    assert copy.scheduler.margin == first.scheduler.margin and copy.epoch == 2
    assert copy.scheduler.config.target_easy_ratio == 0.5
    # A plain resume (same config) changes nothing.
    same = Trial(first.config)
    same.load_state_dict(state)
    assert same.optimizer.state_dict()["param_groups"] == state["optimizer"]["param_groups"]


def test_test_evaluation_and_references(tiny_config: Config) -> None:
    result = train(tiny_config, evaluate_test=True, keep_test_embeddings=True)
    assert result.test_metrics is not None
    assert set(result.test_metrics) == {
        "roc_auc",
        "eer",
        "tar_at_far_1e-3",
        "recall_at_1",
        "map_at_r",
        "pairs",
        "false_accepts_at_far_1e-3",
    }
    assert set(result.reference_metrics) == {"raw_features", "untrained"}
    assert result.test_embeddings is not None and result.test_labels is not None
    assert result.test_embeddings.shape == (len(result.test_labels), 16)
    norms = torch.linalg.norm(torch.as_tensor(result.test_embeddings), dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_tuning_never_touches_test_classes(tiny_config: Config) -> None:
    trial = Trial(tiny_config)
    split = trial.split
    test = set(split.test_classes.tolist())
    assert not test & set(trial.train_labels.tolist())
    assert not test & set(trial.dataset.labels[split.val_indices].tolist())


def test_divergence_raises_a_clear_error(tiny_config: Config) -> None:
    trial = Trial(tiny_config)
    with torch.no_grad():
        for parameter in trial.model.parameters():
            parameter.fill_(math.nan)
    with pytest.raises(TrainingDivergedError, match="train_loss became nan in epoch 1"):
        trial.run()
