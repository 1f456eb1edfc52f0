"""The test views of a re-trained network: ROC curve at fixed rates, and its t-SNE map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from margin_tune.trainables.config import Config
from margin_tune.trainables.metrics.verification import roc_curve, tar_at_far
from margin_tune.trainables.metrics.views import (
    FAR_GRID,
    MAP_CLASSES,
    MAP_SAMPLES_PER_CLASS,
    EmbeddingViews,
    map_indices,
    roc_at_grid,
)
from margin_tune.trainables.trial import Trial


def test_the_roc_at_a_grid_rate_is_what_tar_at_far_measures_there() -> None:
    rng = np.random.default_rng(3)
    same = rng.random(20_000) < 0.2
    scores = rng.normal(size=same.size) + 1.5 * same
    curve = roc_curve(scores, same)
    tar = roc_at_grid(curve)
    for far in (1e-3, 1e-2, 1e-1, 1.0):
        (index,) = np.flatnonzero(np.isclose(FAR_GRID, far))
        assert tar[index] == tar_at_far(curve, far)
    # Below one false accept in 16,000 different-class pairs the rate is not measurable.
    assert np.isnan(tar[1 / curve.num_different > FAR_GRID]).all()
    assert np.isfinite(tar[1 / curve.num_different <= FAR_GRID]).all()
    measured = tar[np.isfinite(tar)]
    assert (np.diff(measured) >= 0).all() and measured[-1] == 1.0


def test_a_map_shows_the_same_classes_for_every_network_of_a_split() -> None:
    labels = np.repeat(np.arange(40), 50)[np.random.default_rng(0).permutation(2000)]
    picked = map_indices(labels, seed=5)
    assert (map_indices(labels, seed=5) == picked).all()
    classes, counts = np.unique(labels[picked], return_counts=True)
    assert len(classes) == MAP_CLASSES and (counts == MAP_SAMPLES_PER_CLASS).all()
    assert (np.diff(picked) > 0).all()
    few = np.array([0, 0, 1, 1, 1])
    assert (map_indices(few, seed=0) == np.arange(5)).all()


def test_a_trial_computes_its_views_and_they_load_back_without_pickle(
    tiny_config: Config, tmp_path: Path
) -> None:
    trial = Trial(tiny_config)
    trial.run()
    embeddings = trial.embed_test()
    views = trial.test_views(embeddings)
    metrics = trial.evaluate_test(embeddings)
    index = int(np.flatnonzero(np.isclose(FAR_GRID, 1e-3))[0])
    # 9,216 different-class test pairs resolve 1e-3: the curve says what the metric says.
    assert views.tar[index] == pytest.approx(metrics["tar_at_far_1e-3"])
    labels = trial.dataset.labels[trial.split.test_indices]
    picked = map_indices(labels, tiny_config.eval.pair_seed)
    assert (views.map_labels == labels[picked]).all()
    assert views.map_xy.shape == (len(picked), 2) and np.isfinite(views.map_xy).all()
    # Same network, same seed: the same map.
    again = trial.test_views(torch.clone(embeddings))
    np.testing.assert_allclose(again.map_xy, views.map_xy)
    loaded = EmbeddingViews.load(views.save(tmp_path / "views.npz"))
    for name in ("far", "tar", "map_xy", "map_labels"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(views, name))
