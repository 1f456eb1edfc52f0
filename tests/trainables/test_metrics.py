"""Tests of the evaluation metrics, against sklearn and pytorch-metric-learning as oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.metrics import roc_auc_score, roc_curve as sklearn_roc_curve

from margin_tune.trainables.config import MIN_MAX_PAIRS
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metrics import (
    Evaluator,
    equal_error_rate,
    evaluate_raw_features,
    pair_scores,
    retrieval_metrics,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_metrics,
    verification_pairs,
)
from margin_tune.trainables.metrics.pairs import MIN_NEGATIVE_PAIRS, VerificationPairs
from margin_tune.trainables.parts import load_config

METRIC_KEYS = {"roc_auc", "eer", "tar_at_far_1e-3", "recall_at_1", "map_at_r"}
COUNT_KEYS = {"pairs", "false_accepts_at_far_1e-3"}


def _pair_set(first: np.ndarray, second: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(first.tolist(), second.tolist(), strict=True))


def _unit_rows(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=1)


# --- pairs ---------------------------------------------------------------------------------


def _pair_keys(pairs: VerificationPairs, n: int) -> np.ndarray:
    """One integer per pair, for checking millions of pairs without Python sets."""
    return pairs.first.astype(np.int64) * n + pairs.second


def _check_pairs(pairs: VerificationPairs, labels: np.ndarray) -> None:
    assert len(pairs.first) == len(pairs.second) == len(pairs.same)
    assert (pairs.first < pairs.second).all()
    assert pairs.first.min() >= 0 and pairs.second.max() < len(labels)
    assert (np.diff(np.sort(_pair_keys(pairs, len(labels)))) > 0).all()  # distinct
    np.testing.assert_array_equal(pairs.same, labels[pairs.first] == labels[pairs.second])


def test_min_negative_pairs_allow_a_thousand_false_accepts_at_far_1e_3() -> None:
    assert MIN_NEGATIVE_PAIRS == 1_000_000
    assert MIN_MAX_PAIRS == 2 * MIN_NEGATIVE_PAIRS


def test_every_pair_exactly_once_when_the_split_has_at_most_max_pairs() -> None:
    labels = np.random.default_rng(0).integers(0, 6, size=60)  # 1770 pairs
    pairs = verification_pairs(labels, max_pairs=MIN_MAX_PAIRS, seed=0)

    listed = list(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    assert listed == list(itertools.combinations(range(60), 2))
    assert pairs.first.dtype == pairs.second.dtype == np.int32
    np.testing.assert_array_equal(pairs.same, labels[pairs.first] == labels[pairs.second])
    other = verification_pairs(labels, max_pairs=5_000_000, seed=123)  # no randomness
    for name in ("first", "second", "same"):
        np.testing.assert_array_equal(getattr(other, name), getattr(pairs, name))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17])
def test_all_pairs_of_tiny_splits_match_triu_indices(n: int) -> None:
    pairs = verification_pairs(np.arange(n) % 2, max_pairs=MIN_MAX_PAIRS, seed=0)
    first, second = np.triu_indices(n, k=1)
    np.testing.assert_array_equal(pairs.first, first)
    np.testing.assert_array_equal(pairs.second, second)


def test_all_pairs_up_to_the_bound_and_a_sample_above_it() -> None:
    labels = np.random.default_rng(1).integers(0, 40, size=2001)  # 2,001,000 pairs
    every = verification_pairs(labels[:2000], max_pairs=MIN_MAX_PAIRS, seed=0)  # 1,999,000
    assert len(every.first) == 1_999_000
    first, second = np.triu_indices(2000, k=1)
    np.testing.assert_array_equal(every.first, first)
    np.testing.assert_array_equal(every.second, second)

    sampled = verification_pairs(labels, max_pairs=MIN_MAX_PAIRS, seed=0)
    assert len(sampled.first) == MIN_MAX_PAIRS
    _check_pairs(sampled, labels)


def _thirty_classes() -> np.ndarray:
    # 2,100 samples in 30 classes of 70: 2,203,950 pairs, 72,450 of them same-class.
    return np.random.default_rng(2).permutation(np.arange(2100) % 30)


def test_sample_above_the_bound_keeps_every_same_class_pair_and_a_million_others() -> None:
    labels = _thirty_classes()
    pairs = verification_pairs(labels, max_pairs=2_000_000, seed=3)

    assert len(pairs.first) == 2_000_000
    _check_pairs(pairs, labels)
    assert pairs.same.sum() == 72_450  # all of them: they fit in half of max_pairs
    assert (~pairs.same).sum() == 2_000_000 - 72_450
    assert (~pairs.same).sum() >= MIN_NEGATIVE_PAIRS
    assert pairs.first.dtype == pairs.second.dtype == np.int32


def test_sample_is_deterministic_for_a_seed() -> None:
    labels = _thirty_classes()
    a = verification_pairs(labels, max_pairs=2_000_000, seed=7)
    b = verification_pairs(labels, max_pairs=2_000_000, seed=7)
    c = verification_pairs(labels, max_pairs=2_000_000, seed=8)

    for name in ("first", "second", "same"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(np.sort(_pair_keys(a, 2100)), np.sort(_pair_keys(c, 2100)))


def test_sampled_different_class_pairs_are_spread_uniformly() -> None:
    labels = _thirty_classes()
    pairs = verification_pairs(labels, max_pairs=2_000_000, seed=4)

    # Each sample has 2,030 different-class partners, each kept with the same probability
    # 1,927,550 / 2,131,500, so every sample keeps about 1,836 of them (sd about 13).
    different = ~pairs.same
    degree = np.bincount(pairs.first[different], minlength=2100) + np.bincount(
        pairs.second[different], minlength=2100
    )
    expected = 2030 * (2_000_000 - 72_450) / 2_131_500
    assert np.abs(degree - expected).max() < 80
    # And so does every pair of classes (4,900 pairs each, about 4,431 kept, sd about 21).
    a, b = labels[pairs.first[different]], labels[pairs.second[different]]
    blocks = np.bincount(np.minimum(a, b) * 30 + np.maximum(a, b), minlength=900)
    kept = blocks.reshape(30, 30)[np.triu_indices(30, k=1)]
    assert np.abs(kept - 4900 * expected / 2030).max() < 120


def test_sample_takes_half_of_max_pairs_when_same_class_pairs_abound() -> None:
    labels = np.random.default_rng(5).permutation(np.arange(2100) % 2)  # 1,101,450 same-class
    pairs = verification_pairs(labels, max_pairs=2_000_000, seed=0)

    _check_pairs(pairs, labels)
    assert pairs.same.sum() == 1_000_000
    assert (~pairs.same).sum() == 1_000_000


def test_sample_fills_up_with_same_class_when_different_class_pairs_run_short() -> None:
    labels = np.array([5] * 2100 + [9])  # 2,100 different-class pairs, 2,203,950 same-class
    pairs = verification_pairs(labels, max_pairs=2_000_000, seed=0)

    assert len(pairs.first) == 2_000_000
    _check_pairs(pairs, labels)
    assert (~pairs.same).sum() == 2100  # every one of them
    np.testing.assert_array_equal(np.sort(pairs.first[~pairs.same]), np.arange(2100))


def test_sample_scales_to_large_splits() -> None:
    labels = np.random.default_rng(6).integers(0, 1000, size=100_000)
    pairs = verification_pairs(labels, max_pairs=2_000_000, seed=0)

    assert len(pairs.first) == 2_000_000
    _check_pairs(pairs, labels)
    assert pairs.same.sum() == 1_000_000


def test_pairs_reject_too_small_max_pairs_and_bad_labels() -> None:
    with pytest.raises(ValueError, match="at least 1000000 different-class"):
        verification_pairs(np.arange(10) % 2, max_pairs=MIN_MAX_PAIRS - 1, seed=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        verification_pairs(np.zeros((3, 3)), max_pairs=MIN_MAX_PAIRS, seed=0)


def test_eval_max_pairs_below_the_bound_is_refused() -> None:
    assert load_config().eval.max_pairs == 5_000_000
    assert load_config(overrides=["eval.max_pairs=2000000"]).eval.max_pairs == MIN_MAX_PAIRS
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=["eval.max_pairs=1999999"])
    assert caught.value.field == "eval.max_pairs"
    assert ">= 2000000" in str(caught.value)
    assert "1,000 false accepts at FAR 1e-3" in str(caught.value)
    with pytest.raises(ConfigError, match="known keys of eval"):
        load_config(overrides=["eval.num_pairs=20000"])


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
    assert metrics == {
        "roc_auc": 1.0,
        "eer": 0.0,
        "tar_at_far_1e-3": 1.0,
        "pairs": 100.0,
        "false_accepts_at_far_1e-3": 0.0,
    }


@pytest.mark.parametrize("seed", range(5))
def test_false_accepts_at_far_match_a_brute_force_threshold_scan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    same = rng.random(20_000) < 0.3
    scores = np.round(rng.normal(size=20_000) + 2.0 * same, 2)  # ties included

    # The most lenient threshold, over the sorted distinct scores, whose FAR is <= 1e-3.
    false_accepts, true_accepts = 0, 0
    for threshold in np.sort(np.unique(scores))[::-1]:
        accepted = scores >= threshold
        if (accepted & ~same).sum() / (~same).sum() > 1e-3:
            break
        false_accepts, true_accepts = (accepted & ~same).sum(), (accepted & same).sum()

    metrics = verification_metrics(scores, same)
    assert metrics["false_accepts_at_far_1e-3"] == false_accepts
    assert metrics["tar_at_far_1e-3"] == true_accepts / same.sum()
    assert metrics["pairs"] == 20_000.0
    assert 0 < false_accepts <= 1e-3 * (~same).sum()
    assert all(isinstance(value, float) for value in metrics.values())


def test_verification_metrics_count_every_pair_of_a_small_split() -> None:
    n = 60
    labels = np.random.default_rng(3).integers(0, 4, size=n)
    embeddings = _unit_rows(n, 5, seed=3)
    pairs = verification_pairs(labels, max_pairs=MIN_MAX_PAIRS, seed=0)

    metrics = verification_metrics(pair_scores(embeddings, pairs), pairs.same)

    assert metrics["pairs"] == n * (n - 1) / 2 == 1770
    assert Evaluator(labels)(embeddings)["pairs"] == 1770


def test_roc_curve_rejects_a_single_class_of_pairs() -> None:
    with pytest.raises(ValueError, match="same- and different-class"):
        roc_curve(np.arange(4.0), np.ones(4, dtype=bool))


def test_pair_scores_are_minus_euclidean_distance() -> None:
    embeddings = _unit_rows(30, 8, seed=0)
    pairs = verification_pairs(np.arange(30) % 4, max_pairs=MIN_MAX_PAIRS, seed=0)
    expected = -np.linalg.norm(
        embeddings.numpy()[pairs.first] - embeddings.numpy()[pairs.second], axis=1
    )
    np.testing.assert_allclose(pair_scores(embeddings, pairs), expected, rtol=1e-6)


def test_pair_scores_do_not_depend_on_the_chunking() -> None:
    embeddings = _unit_rows(3000, 64, seed=4)  # 4.5 M pairs, many chunks
    pairs = verification_pairs(np.arange(3000) % 7, max_pairs=5_000_000, seed=0)
    sample = np.random.default_rng(4).choice(len(pairs.first), size=10_000, replace=False)
    expected = -torch.linalg.vector_norm(
        embeddings[pairs.first[sample]] - embeddings[pairs.second[sample]], dim=1
    )
    np.testing.assert_array_equal(pair_scores(embeddings, pairs)[sample], expected.double())


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

    metrics = Evaluator(labels)(embeddings)

    assert metrics == {
        "roc_auc": 1.0,
        "eer": 0.0,
        "tar_at_far_1e-3": 1.0,
        "recall_at_1": 1.0,
        "map_at_r": 1.0,
        "pairs": 79_800.0,  # every pair of 400 samples
        "false_accepts_at_far_1e-3": 0.0,
    }


def test_evaluator_combines_verification_on_its_pairs_and_retrieval() -> None:
    labels = np.random.default_rng(1).integers(0, 5, size=300)
    embeddings = _unit_rows(300, 6, seed=1)
    evaluator = Evaluator(labels, max_pairs=MIN_MAX_PAIRS, seed=2)

    metrics = evaluator(embeddings)

    assert list(metrics)[-2:] == ["pairs", "false_accepts_at_far_1e-3"]  # counts last
    assert set(metrics) == METRIC_KEYS | COUNT_KEYS
    assert metrics["pairs"] == 300 * 299 / 2
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
    evaluator = Evaluator(labels, seed=0)

    metrics = evaluate_raw_features(evaluator, images * scale)

    expected = evaluator(F.normalize(images.reshape(60, 16), dim=1))
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6)


def test_raw_features_may_have_an_all_zero_row() -> None:
    labels = np.random.default_rng(4).integers(0, 3, size=50)
    generator = torch.Generator().manual_seed(4)
    images = torch.rand(50, 1, 4, 4, generator=generator)
    images[7] = 0  # a blank image: legal data, no direction
    evaluator = Evaluator(labels)

    metrics = evaluate_raw_features(evaluator, images)

    rows = F.normalize(images.reshape(50, 16), dim=1)
    assert not rows[7].any()
    first, second = np.triu_indices(50, k=1)
    distances = torch.linalg.vector_norm(rows[first] - rows[second], dim=1).numpy()
    np.testing.assert_allclose(distances[(first == 7) | (second == 7)], 1.0, rtol=1e-6)
    same = labels[first] == labels[second]
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-9)
    assert np.isfinite(list(metrics.values())).all()


@pytest.mark.parametrize("scale", [2.0, 0.0], ids=["scaled-by-2", "zero"])
def test_a_model_output_off_the_unit_sphere_is_still_rejected(scale: float) -> None:
    labels = np.random.default_rng(5).integers(0, 3, size=50)
    embeddings = _unit_rows(50, 8, seed=5)
    embeddings[3] *= scale
    evaluator = Evaluator(labels)

    with pytest.raises(ValueError, match="L2-normalised"):
        evaluator(embeddings)
    evaluate_raw_features(evaluator, embeddings)  # raw features are normalised first
