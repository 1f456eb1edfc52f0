"""Network collapse: the spread measurement, the monitor, and trials that stop on collapse."""

from __future__ import annotations

import argparse
import io
import json
import logging
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from tiny import TINY

from margin_tune.trainables.collapse import PROBE_SIZE, CollapseMonitor, choose_probe
from margin_tune.trainables.config import CollapseConfig, Config
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metrics import EmbeddingSpread, embedding_spread
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import EpochReport, TrialResult, train

#: Overrides (on top of the tiny config) under which the tiny trial collapses for good: with
#: overlapping classes (noise 1.0), a deeper trunk and a large step, batch-hard mining drives the
#: mean pairwise distance from 0.012 after epoch 1 to 0.001 after epoch 8, monotonically.
COLLAPSING = (
    "miner.name=hard",
    "train.lr=0.1",
    "dataset.noise=1.0",
    "model.hidden_dims=[32, 32, 32]",
    "train.epochs=8",
)


# --- the measurement ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_spread_matches_scipy_pdist_and_numpy_pca(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(60, 8)) * rng.uniform(0.1, 3.0, size=8)  # anisotropic
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    spread = embedding_spread(torch.as_tensor(points, dtype=torch.float32))
    assert spread.mean_pairwise_distance == pytest.approx(pdist(points).mean(), rel=1e-6)
    singular = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    share = singular[0] ** 2 / np.sum(singular**2)
    assert spread.top_direction_variance == pytest.approx(share, rel=1e-5)


def test_spread_of_known_shapes() -> None:
    # Two antipodal points: distance 2, all variance along one direction.
    line = embedding_spread(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    assert line == EmbeddingSpread(mean_pairwise_distance=2.0, top_direction_variance=1.0)
    # The 2D axes (±e1, ±e2): isotropic, variance split in half.
    square = embedding_spread(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
    assert square.top_direction_variance == pytest.approx(0.5)
    assert square.mean_pairwise_distance == pytest.approx((4 * np.sqrt(2) + 2 * 2) / 6)
    # One point repeated: nothing left to spread, as collapsed as it gets.
    point = embedding_spread(torch.tensor([[0.6, 0.8]] * 5))
    assert point == EmbeddingSpread(mean_pairwise_distance=0.0, top_direction_variance=1.0)


def test_probe_is_fixed_sorted_and_capped() -> None:
    assert np.array_equal(choose_probe(2000, seed=3), choose_probe(2000, seed=3))
    probe = choose_probe(2000, seed=3)
    assert len(probe) == PROBE_SIZE and len(set(probe.tolist())) == PROBE_SIZE
    assert np.array_equal(probe, np.sort(probe)) and probe.max() < 2000
    assert np.array_equal(choose_probe(100, seed=3), np.arange(100))
    assert not np.array_equal(probe, choose_probe(2000, seed=4))


# --- the monitor ----------------------------------------------------------------------------


def spread(distance: float) -> EmbeddingSpread:
    return EmbeddingSpread(mean_pairwise_distance=distance, top_direction_variance=0.5)


def test_monitor_needs_patience_consecutive_epochs_below_threshold() -> None:
    monitor = CollapseMonitor(CollapseConfig(threshold=0.1, patience=3))
    decisions = [monitor.update(spread(d)) for d in (0.05, 0.05, 0.5, 0.09, 0.1, 0.01, 0.0, 0.02)]
    # 0.1 itself is not below; 0.5 and 0.1 reset the count.
    assert decisions == [False, False, False, False, False, False, False, True]
    assert monitor.epochs_below == 3 and monitor.collapsed


def test_disabled_monitor_counts_but_never_stops() -> None:
    monitor = CollapseMonitor(CollapseConfig(enabled=False, patience=1))
    assert not monitor.update(spread(0.0))
    assert monitor.epochs_below == 1 and not monitor.collapsed


def test_monitor_state_round_trips() -> None:
    config = CollapseConfig(threshold=0.1, patience=3)
    monitor = CollapseMonitor(config)
    monitor.update(spread(0.01))
    monitor.update(spread(0.02))
    restored = CollapseMonitor(config)
    restored.load_state_dict(torch.load(saved_to_bytes(monitor.state_dict()), weights_only=True))
    assert restored.state_dict() == monitor.state_dict() == {"epochs_below": 2}
    assert restored.update(spread(0.03)) and monitor.update(spread(0.03))


def saved_to_bytes(state: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("collapse.threshold=-0.01", r"^collapse\.threshold: must be in \[0, 2\]"),
        ("collapse.threshold=2.5", r"^collapse\.threshold: must be in \[0, 2\]"),
        ("collapse.patience=0", r"^collapse\.patience: must be >= 1, got 0"),
        ("collapse.enabled=1", r"^collapse\.enabled: must be true or false"),
    ],
)
def test_bad_collapse_values_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


# --- trials ---------------------------------------------------------------------------------


def collapsing_config(*extra: str) -> Config:
    return load_config(overrides=[*TINY, *COLLAPSING, *extra])


@dataclass
class CollapsedRun:
    """One collapsing trial, run once for the module: its result, reports, checkpoints, log."""

    config: Config
    result: TrialResult
    reports: list[EpochReport]
    checkpoints: dict[int, dict]
    log: str


@pytest.fixture(scope="module")
def collapsed() -> CollapsedRun:
    config = collapsing_config("collapse.patience=3")
    reports: list[EpochReport] = []
    checkpoints: dict[int, dict] = {}

    def on_epoch(report: EpochReport) -> None:
        reports.append(report)  # saved as Tune saves it, so later steps cannot change it
        checkpoints[report.epoch] = torch.load(
            saved_to_bytes(report.checkpoint()), weights_only=True
        )

    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logger = logging.getLogger("margin_tune.trainables.trial")
    logger.addHandler(handler)
    try:
        result = train(config, on_epoch)
    finally:
        logger.removeHandler(handler)
    return CollapsedRun(config, result, reports, checkpoints, log.getvalue())


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]


def test_a_collapsing_trial_stops_after_patience_epochs_below_the_threshold(
    collapsed: CollapsedRun,
) -> None:
    threshold = collapsed.config.collapse.threshold
    history = collapsed.result.history
    spreads = [row["embedding_spread"] for row in history]
    first_below = next(epoch for epoch, s in enumerate(spreads, start=1) if s < threshold)
    assert collapsed.result.stop_reason == "collapsed"
    assert len(history) == first_below + 3 - 1 < collapsed.config.train.epochs
    assert all(s < threshold for s in spreads[first_below - 1 :])
    assert [row["collapsed"] for row in history] == [0.0] * (len(history) - 1) + [1.0]
    assert collapsed.reports[-1].metrics["collapsed"] == 1.0  # what Tune's report carries
    assert f"epoch {len(history)}: embeddings collapsed" in collapsed.log


def test_the_same_trial_with_collapse_detection_off_runs_every_epoch(
    collapsed: CollapsedRun,
) -> None:
    config = collapsing_config("collapse.enabled=false")
    result = train(config)
    assert result.stop_reason == "completed"
    assert len(result.history) == config.train.epochs
    assert comparable(result.history[: len(collapsed.result.history) - 1]) == comparable(
        collapsed.result.history[:-1]
    )
    assert result.history[-1]["embedding_spread"] < config.collapse.threshold / 5
    assert all(row["collapsed"] == 0.0 for row in result.history)


def test_a_healthy_trial_is_not_flagged(tiny_config: Config) -> None:
    # The strictest setting: one epoch below the default threshold would stop it.
    config = replace(tiny_config, collapse=replace(tiny_config.collapse, patience=1))
    result = train(config)
    assert result.stop_reason == "completed"
    for row in result.history:
        assert row["embedding_spread"] > 10 * config.collapse.threshold
        assert 0.0 < row["top_direction_variance"] < 1.0
        assert row["collapsed"] == 0.0


def test_resume_mid_count_stops_at_the_same_epoch(collapsed: CollapsedRun) -> None:
    history = collapsed.result.history
    threshold = collapsed.config.collapse.threshold
    first_below = next(int(row["epoch"]) for row in history if row["embedding_spread"] < threshold)
    assert collapsed.checkpoints[first_below]["collapse"] == {"epochs_below": 1}
    resumed = train(collapsed.config, checkpoint=collapsed.checkpoints[first_below])
    assert resumed.stop_reason == "collapsed"
    assert comparable(resumed.history) == comparable(history)
    # A checkpoint of the collapsed epoch resumes into nothing more: the trial is over.
    final = train(collapsed.config, checkpoint=collapsed.checkpoints[len(history)])
    assert final.stop_reason == "collapsed"
    assert len(final.history) == len(history)


def test_train_command_prints_and_records_the_collapse(
    tiny_overrides: list[str], tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from margin_tune.pipeline.cli import train as train_command

    out = tmp_path / "run"
    overrides = [*tiny_overrides, *COLLAPSING]
    args = argparse.Namespace(
        config=None, overrides=overrides, out=out, save_embeddings=False, json=False
    )
    assert train_command.run(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "collapsed"
    assert summary["final"]["collapsed"] == 1.0
    assert f"stopped after epoch {summary['epochs']}: collapsed" in capsys.readouterr().out


def test_tune_side_tags_what_the_trial_reports(
    collapsed: CollapsedRun, tiny_config: Config
) -> None:
    from margin_tune.pipeline.sweep.callback import trial_status

    last = collapsed.reports[-1].metrics
    assert trial_status(collapsed.config, last, failed=False) == "collapsed"
    healthy = train(tiny_config).history[-1]
    assert trial_status(tiny_config, healthy, failed=False) == "completed"
