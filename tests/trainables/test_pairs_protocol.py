"""LFW's protocol: each fold scored with the threshold fitted on the other folds."""

from __future__ import annotations

import numpy as np
import pytest

from margin_tune.trainables.metrics.pairs_protocol import best_score_threshold, protocol_report


def test_the_threshold_cuts_halfway_between_the_best_neighbours() -> None:
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    assert best_score_threshold(scores, np.array([1, 1, 0, 0])) == 1.5
    assert best_score_threshold(scores, np.array([1, 1, 1, 1])) == 0.0  # accept every pair
    assert best_score_threshold(scores, np.array([0, 0, 0, 0])) == 4.0  # accept none


def test_tied_scores_are_never_split_and_the_strictest_best_cut_wins() -> None:
    # Accept none: 2 right; accept the tied pair: 2 right; accept all: 1 right.
    threshold = best_score_threshold(np.array([1.0, 1.0, 0.0]), np.array([1, 0, 0]))
    assert threshold == 2.0


def test_each_fold_is_judged_by_the_other_folds_threshold_never_its_own() -> None:
    """Each fold alone separates perfectly, at a cut the other fold gets wrong: fitted on itself
    it would score 1.0, scored as the protocol prescribes it scores 0.5."""
    scores = -np.array([0.1, 0.2, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    report = protocol_report(scores, same, fold)
    assert [f.accuracy for f in report.folds] == [0.5, 0.5]
    assert [f.distance_threshold for f in report.folds] == pytest.approx([0.85, 0.35])
    assert [(f.pairs, f.same_pairs) for f in report.folds] == [(4, 2), (4, 2)]
    assert report.accuracy_mean == 0.5 and report.accuracy_std == 0.0
    assert report.overall["pairs"] == 8


@pytest.mark.parametrize("seed", range(5))
def test_separable_scores_give_full_accuracy_and_the_summary_is_the_folds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    folds, per_kind = 10, 30
    same = np.tile(np.repeat([1, 0], per_kind), folds)
    fold = np.repeat(np.arange(folds), 2 * per_kind)
    separable = np.where(
        same == 1, rng.uniform(-0.9, -0.6, same.size), rng.uniform(-1.9, -1.1, same.size)
    )
    report = protocol_report(separable, same, fold)
    assert [f.accuracy for f in report.folds] == [1.0] * folds
    assert report.overall["roc_auc"] == 1.0
    noisy = rng.normal(0.0, 1.0, same.size) + same
    report = protocol_report(noisy, same, fold)
    accuracies = np.array([f.accuracy for f in report.folds])
    assert report.accuracy_mean == pytest.approx(accuracies.mean())
    assert report.accuracy_standard_error == pytest.approx(accuracies.std(ddof=1) / np.sqrt(folds))
    assert 0.5 < report.accuracy_mean < 1.0


def test_one_fold_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 folds"):
        protocol_report(np.zeros(4), np.array([1, 0, 1, 0]), np.zeros(4, dtype=int))
