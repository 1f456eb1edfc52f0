"""Tests of the evaluation metrics, against sklearn and pytorch-metric-learning as oracles."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from trainables.metrics import (
    Evaluator,
    equal_error_rate,
    evaluate_raw_features,
    pair_scores,
    retrieval_metrics,
    roc_auc,
    roc_curve,
    sample_verification_pairs,
    tar_at_far,
    verification_metrics,
)

METRIC_KEYS = {"roc_auc", "eer", "tar_at_far_1e-3", "recall_at_1", "map_at_r"}


def _pair_set(first: np.ndarray, second: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(first.tolist(), second.tolist(), strict=True))


def _unit_rows(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=1)


# --- pairs ---------------------------------------------------------------------------------


def test_pairs_are_distinct_unordered_and_half_same_class() -> None:
    labels = np.random.default_rng(0).integers(0, 10, size=500)
    pairs = sample_verification_pairs(labels, num_pairs=2000, seed=3)

    assert len(pairs.first) == len(pairs.second) == len(pairs.same) == 2000
    assert pairs.same.sum() == 1000
    assert (pairs.first < pairs.second).all()
    assert len(_pair_set(pairs.first, pairs.second)) == 2000
    np.testing.assert_array_equal(pairs.same, labels[pairs.first] == labels[pairs.second])


def test_pairs_are_deterministic_for_a_seed() -> None:
    labels = np.random.default_rng(1).integers(0, 20, size=1000)
    a = sample_verification_pairs(labels, num_pairs=500, seed=7)
    b = sample_verification_pairs(labels, num_pairs=500, seed=7)
    c = sample_verification_pairs(labels, num_pairs=500, seed=8)

    for name in ("first", "second", "same"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert _pair_set(a.first, a.second) != _pair_set(c.first, c.second)


def test_all_pairs_when_there_are_no_more_than_requested() -> None:
    labels = np.array([0, 0, 1, 2, 1, 0, 2, 2, 3, 0, 1, 1, 0, 3, 2, 2, 0, 1, 3, 3])  # 190 pairs
    pairs = sample_verification_pairs(labels, num_pairs=190, seed=0)

    assert _pair_set(pairs.first, pairs.second) == set(itertools.combinations(range(20), 2))
    assert len(pairs.first) == 190
    np.testing.assert_array_equal(pairs.same, labels[pairs.first] == labels[pairs.second])

    sampled = sample_verification_pairs(labels, num_pairs=189, seed=0)
    assert len(_pair_set(sampled.first, sampled.second)) == 189
    assert sampled.same.sum() == 41  # every same-class pair: 15 + 10 + 10 + 6


def test_pairs_fill_up_with_different_class_when_same_class_pairs_run_short() -> None:
    labels = np.concatenate([np.arange(100), [100, 100, 100]])  # only 3 same-class pairs
    pairs = sample_verification_pairs(labels, num_pairs=1000, seed=0)

    assert len(pairs.first) == 1000
    assert pairs.same.sum() == 3
    assert _pair_set(pairs.first[pairs.same], pairs.second[pairs.same]) == {
        (100, 101),
        (100, 102),
        (101, 102),
    }
    assert (labels[pairs.first] == labels[pairs.second]).sum() == 3


def test_pairs_fill_up_with_same_class_when_different_class_pairs_run_short() -> None:
    labels = np.array([5] * 60 + [9])  # 60 different-class pairs, 1770 same-class
    pairs = sample_verification_pairs(labels, num_pairs=1000, seed=0)

    assert len(pairs.first) == 1000
    assert (~pairs.same).sum() == 60
    assert _pair_set(pairs.first[~pairs.same], pairs.second[~pairs.same]) == {
        (i, 60) for i in range(60)
    }
    assert len(_pair_set(pairs.first, pairs.second)) == 1000


def test_pairs_can_exhaust_a_group_exactly() -> None:
    labels = np.random.default_rng(2).permutation([0] * 10 + [1] * 30)  # 480 same, 300 diff
    pairs = sample_verification_pairs(labels, num_pairs=779, seed=4)

    everything = set(itertools.combinations(range(40), 2))
    different = {(i, j) for i, j in everything if labels[i] != labels[j]}
    drawn = _pair_set(pairs.first, pairs.second)
    assert len(drawn) == 779
    assert drawn <= everything
    assert _pair_set(pairs.first[~pairs.same], pairs.second[~pairs.same]) == different
    np.testing.assert_array_equal(pairs.same, labels[pairs.first] == labels[pairs.second])


def test_pairs_are_drawn_uniformly_within_each_group() -> None:
    labels = np.array([2, 0, 1, 2, 1, 0, 2, 1, 2, 1, 0, 2])  # sizes 3, 4, 5: 19 same, 47 diff
    counts: Counter[tuple[int, int]] = Counter()
    draws = 2000
    for seed in range(draws):
        pairs = sample_verification_pairs(labels, num_pairs=20, seed=seed)
        counts.update(_pair_set(pairs.first, pairs.second))

    same = {p for p in itertools.combinations(range(12), 2) if labels[p[0]] == labels[p[1]]}
    assert len(counts) == 66
    for pair, count in counts.items():
        expected = draws * 10 / (19 if pair in same else 47)
        assert abs(count - expected) < 0.2 * expected, (pair, count, expected)


def test_pairs_scale_to_large_splits() -> None:
    labels = np.random.default_rng(5).integers(0, 1000, size=100_000)
    pairs = sample_verification_pairs(labels, num_pairs=20_000, seed=0)

    assert len(_pair_set(pairs.first, pairs.second)) == 20_000
    assert pairs.same.sum() == 10_000
    np.testing.assert_array_equal(pairs.same, labels[pairs.first] == labels[pairs.second])


# --- verification --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("levels", [None, 2, 5, 50])
def test_roc_auc_matches_sklearn_including_ties(seed: int, levels: int | None) -> None:
    rng = np.random.default_rng(seed)
    same = rng.random(3000) < 0.3
    scores = rng.normal(size=3000) + same
    if levels is not None:
        scores = np.floor(scores * levels / 4)

    assert roc_auc(roc_curve(scores, same)) == pytest.approx(roc_auc_score(same, scores), abs=1e-9)


def test_roc_auc_hand_made() -> None:
    scores = np.array([3.0, 2.0, 2.0, 1.0])
    same = np.array([True, True, False, False])
    assert roc_auc(roc_curve(scores, same)) == 0.875  # the tie counts half
    assert roc_auc(roc_curve(np.zeros(6), np.array([True, False] * 3))) == 0.5


def test_eer_exactly_at_an_operating_point() -> None:
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    same = np.array([True, False, True, False])
    assert equal_error_rate(roc_curve(scores, same)) == 0.5


def test_eer_interpolated_between_operating_points() -> None:
    # Operating points (FAR, FRR): ..., (0, 1/3), (1/2, 1/3), ...; they meet at 1/3.
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    same = np.array([True, True, False, False, True])
    assert equal_error_rate(roc_curve(scores, same)) == pytest.approx(1 / 3, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("levels", [None, 3, 40])
def test_eer_matches_the_crossing_of_sklearn_roc_curve(seed: int, levels: int | None) -> None:
    rng = np.random.default_rng(seed)
    same = rng.random(2000) < 0.5
    scores = rng.normal(size=2000) + 1.5 * same
    if levels is not None:
        scores = np.round(scores * levels / 4)

    fpr, tpr, _ = sklearn_roc_curve(same, scores, drop_intermediate=False)
    fnr = 1 - tpr
    k = np.flatnonzero(fpr - fnr >= 0)[0]
    # Where the segment from point k-1 to point k crosses FAR = FRR.
    t = (fnr[k - 1] - fpr[k - 1]) / ((fpr[k] - fpr[k - 1]) + (fnr[k - 1] - fnr[k]))
    expected = fpr[k - 1] + t * (fpr[k] - fpr[k - 1])

    assert equal_error_rate(roc_curve(scores, same)) == pytest.approx(expected, abs=1e-12)


def _tar_far_example(third_negative: float) -> tuple[np.ndarray, np.ndarray]:
    negatives = np.concatenate([np.zeros(1997), [0.9, 0.8, third_negative]])
    positives = np.array([1.0] * 50 + [0.85] * 30 + [0.75] * 10 + [0.5] * 10)
    scores = np.concatenate([positives, negatives])
    same = np.concatenate([np.ones(100, dtype=bool), np.zeros(2000, dtype=bool)])
    return scores, same


def test_tar_at_far_takes_the_most_lenient_threshold_with_two_false_accepts() -> None:
    # 2000 negatives: FAR 1e-3 allows 2 false accepts; at threshold 0.75 there are exactly 2.
    scores, same = _tar_far_example(third_negative=0.7)
    assert tar_at_far(roc_curve(scores, same), 1e-3) == 0.9


def test_tar_at_far_accepts_tied_scores_together() -> None:
    # The third negative ties with ten positives at 0.75, so that threshold has FAR 1.5e-3.
    scores, same = _tar_far_example(third_negative=0.75)
    assert tar_at_far(roc_curve(scores, same), 1e-3) == 0.8


@pytest.mark.parametrize("seed", range(5))
def test_tar_at_far_matches_a_brute_force_threshold_scan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    same = rng.random(6000) < 0.4
    scores = np.round(rng.normal(size=6000) + 2.0 * same, 2)

    best = 0.0
    for threshold in np.unique(scores):
        accepted = scores >= threshold
        if (accepted & ~same).sum() / (~same).sum() <= 1e-3:
            best = max(best, (accepted & same).sum() / same.sum())

    assert tar_at_far(roc_curve(scores, same), 1e-3) == best
    assert best > 0


def test_verification_metrics_of_perfectly_separated_scores() -> None:
    same = np.array([True, False] * 50)
    metrics = verification_metrics(np.where(same, 1.0, -1.0), same)
    assert metrics == {"roc_auc": 1.0, "eer": 0.0, "tar_at_far_1e-3": 1.0}


def test_roc_curve_rejects_a_single_class_of_pairs() -> None:
    with pytest.raises(ValueError, match="same- and different-class"):
        roc_curve(np.arange(4.0), np.ones(4, dtype=bool))


def test_pair_scores_are_minus_euclidean_distance() -> None:
    embeddings = _unit_rows(30, 8, seed=0)
    pairs = sample_verification_pairs(np.arange(30) % 4, num_pairs=100, seed=0)
    expected = -np.linalg.norm(
        embeddings.numpy()[pairs.first] - embeddings.numpy()[pairs.second], axis=1
    )
    np.testing.assert_allclose(pair_scores(embeddings, pairs), expected, rtol=1e-6)


# --- retrieval -----------------------------------------------------------------------------


def test_retrieval_hand_made() -> None:
    # On a line: A@0, A@1, B@2.5, A@4. B has no other sample, so it is skipped.
    # Query 0 ranks A, B (AP 1/2); query 1 ranks A, B (AP 1/2); query 3 ranks B, A (AP 1/4).
    embeddings = torch.tensor([[0.0], [1.0], [2.5], [4.0]])
    labels = torch.tensor([0, 0, 1, 0])
    for chunk_size in (1, 3, 1024):
        metrics = retrieval_metrics(embeddings, labels, chunk_size=chunk_size)
        assert metrics["recall_at_1"] == pytest.approx(2 / 3, abs=1e-12)
        assert metrics["map_at_r"] == pytest.approx(5 / 12, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("singletons", [0, 5])
def test_retrieval_matches_pytorch_metric_learning(seed: int, singletons: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (500,), generator=generator)
    labels[:singletons] = torch.arange(100, 100 + singletons)
    centres = torch.randn(106, 16, generator=generator)
    embeddings = F.normalize(
        centres[labels] + 1.5 * torch.randn(500, 16, generator=generator), dim=1
    )

    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(LpDistance()),
    )
    expected = calculator.get_accuracy(
        embeddings, labels, embeddings, labels, ref_includes_query=True
    )
    metrics = retrieval_metrics(embeddings, labels, chunk_size=64)

    assert 0.2 < metrics["map_at_r"] < 0.9  # neither trivial nor perfect
    assert metrics["recall_at_1"] == pytest.approx(expected["precision_at_1"], abs=1e-6)
    assert metrics["map_at_r"] == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-6)


def test_retrieval_is_nan_without_any_class_of_two() -> None:
    metrics = retrieval_metrics(_unit_rows(5, 3, seed=0), torch.arange(5))
    assert np.isnan(metrics["recall_at_1"])
    assert np.isnan(metrics["map_at_r"])


# --- evaluator -----------------------------------------------------------------------------


def test_evaluator_on_perfect_embeddings() -> None:
    labels = np.random.default_rng(0).integers(0, 8, size=400)
    embeddings = F.one_hot(torch.as_tensor(labels), num_classes=8).float()

    metrics = Evaluator(labels, num_pairs=2000, seed=0)(embeddings)

    assert metrics == {
        "roc_auc": 1.0,
        "eer": 0.0,
        "tar_at_far_1e-3": 1.0,
        "recall_at_1": 1.0,
        "map_at_r": 1.0,
    }


def test_evaluator_combines_verification_on_its_pairs_and_retrieval() -> None:
    labels = np.random.default_rng(1).integers(0, 5, size=300)
    embeddings = _unit_rows(300, 6, seed=1)
    evaluator = Evaluator(labels, num_pairs=1000, seed=2)

    metrics = evaluator(embeddings)

    assert set(metrics) == METRIC_KEYS
    assert all(isinstance(value, float) for value in metrics.values())
    scores = pair_scores(embeddings, evaluator.pairs)
    assert metrics["roc_auc"] == pytest.approx(
        roc_auc_score(evaluator.pairs.same, scores), abs=1e-9
    )
    retrieval = retrieval_metrics(embeddings, torch.as_tensor(labels))
    assert metrics["recall_at_1"] == retrieval["recall_at_1"]
    assert metrics["map_at_r"] == retrieval["map_at_r"]
    assert evaluator(embeddings) == metrics


def test_evaluator_uses_every_pair_of_a_small_split() -> None:
    labels = np.random.default_rng(2).integers(0, 4, size=40)
    embeddings = _unit_rows(40, 5, seed=2)
    metrics = Evaluator(labels)(embeddings)

    first, second = np.triu_indices(40, k=1)
    distances = np.linalg.norm(embeddings.numpy()[first] - embeddings.numpy()[second], axis=1)
    same = labels[first] == labels[second]
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-9)


@pytest.mark.parametrize(
    "embeddings",
    [
        2 * torch.eye(4),
        torch.full((4, 4), float("nan")),
        torch.eye(4)[:3],
    ],
    ids=["not-normalised", "nan", "wrong-length"],
)
def test_evaluator_rejects_bad_embeddings(embeddings: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="embeddings"):
        Evaluator(np.array([0, 0, 1, 1]))(embeddings)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [4, 4, 4]], ids=["singletons", "one-class"])
def test_evaluator_rejects_a_split_without_both_kinds_of_pairs(labels: list[int]) -> None:
    with pytest.raises(ValueError, match="split needs"):
        Evaluator(np.array(labels))


def test_raw_features_are_flattened_and_normalised() -> None:
    labels = np.random.default_rng(3).integers(0, 3, size=60)
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(60, 1, 4, 4, generator=generator)
    scale = torch.rand(60, 1, 1, 1, generator=generator) * 10 + 0.1
    evaluator = Evaluator(labels, num_pairs=500, seed=0)

    metrics = evaluate_raw_features(evaluator, images * scale)

    expected = evaluator(F.normalize(images.reshape(60, 16), dim=1))
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6)
