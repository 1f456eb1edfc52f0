"""The fused triplet loss, difficulty counts and δ reservoir against PML and brute force."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradients import assert_matches, loss_and_grad
from pytorch_metric_learning import losses, miners
from torch import Tensor

from margin_tune.trainables.losses import (
    BatchGeometry,
    DifficultyCounts,
    EffectiveMarginReservoir,
    Reduction,
    difficulty_counts,
    triplet_margin_loss,
    triplet_step,
)
from margin_tune.trainables.miners import MINERS, build_miner

MARGINS = (0.0, 0.1, 0.5)


def make_batch(kind: str, seed: int = 0, dim: int = 16) -> tuple[Tensor, Tensor]:
    """Unnormalised embeddings and labels; ``unbalanced`` has singleton classes."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "pk":
        labels = torch.arange(8).repeat_interleave(4)
    elif kind == "unbalanced":
        sizes = (1, 1, 6, 3, 2, 1, 5, 4, 1, 2)
        labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        labels = labels[torch.randperm(len(labels), generator=generator)]
    else:
        raise ValueError(kind)
    return torch.randn(len(labels), dim, generator=generator) * 3, labels


def brute_force_triplets(labels: Tensor) -> list[tuple[int, int, int]]:
    labels_list = labels.tolist()
    indices = range(len(labels_list))
    return [
        (a, p, n)
        for a, p, n in product(indices, indices, indices)
        if p != a and labels_list[p] == labels_list[a] and labels_list[n] != labels_list[a]
    ]


def unit_dist(embeddings: Tensor) -> Tensor:
    unit = F.normalize(embeddings, dim=1)
    return torch.cdist(unit, unit)


def brute_force_loss(
    embeddings: Tensor, triplets: list[tuple[int, int, int]], margin: float, reduction: Reduction
) -> Tensor:
    """The per-triplet loss, looped: the definition the fused loss must reproduce."""
    dist = unit_dist(embeddings)
    terms = [torch.relu(dist[a, p] - dist[a, n] + margin) for a, p, n in triplets]
    if reduction == "mean_nonzero":
        terms = [term for term in terms if term > 0]
    return torch.stack(terms).mean() if terms else dist.sum() * 0


def fused(
    miner: str, margin: float, reduction: Reduction = "mean_nonzero"
) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda x, labels: triplet_step(x, labels, margin, build_miner(miner), reduction).loss


def delta(dist: np.ndarray, a: int, p: int, n: int) -> float:
    return float(dist[a, n]) - float(dist[a, p])


@pytest.mark.parametrize("kind", ["pk", "unbalanced"])
@pytest.mark.parametrize("margin", MARGINS)
def test_all_miner_matches_pml_triplet_margin_loss(kind: str, margin: float) -> None:
    embeddings, labels = make_batch(kind)
    pml_miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="all")
    pml_loss = losses.TripletMarginLoss(margin=margin)
    expected = loss_and_grad(embeddings, lambda x: pml_loss(x, labels, pml_miner(x, labels)))
    actual = loss_and_grad(embeddings, lambda x: fused("all", margin)(x, labels))
    assert expected[0] > 0
    assert_matches(actual, expected)


@pytest.mark.parametrize("kind", ["pk", "unbalanced"])
@pytest.mark.parametrize("margin", MARGINS)
def test_hard_miner_matches_pml_batch_hard(kind: str, margin: float) -> None:
    embeddings, labels = make_batch(kind, seed=1)
    pml_miner = miners.BatchHardMiner()
    pml_loss = losses.TripletMarginLoss(margin=margin)
    expected = loss_and_grad(embeddings, lambda x: pml_loss(x, labels, pml_miner(x, labels)))
    actual = loss_and_grad(embeddings, lambda x: fused("hard", margin)(x, labels))
    assert expected[0] > 0
    assert_matches(actual, expected)


@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean"])
@pytest.mark.parametrize("kind", ["pk", "unbalanced"])
@pytest.mark.parametrize("margin", (*MARGINS, 1.0))
def test_semihard_matches_brute_force(kind: str, margin: float, reduction: Reduction) -> None:
    embeddings, labels = make_batch(kind, seed=2)
    dist = unit_dist(embeddings).detach().double().numpy()
    semihard = [t for t in brute_force_triplets(labels) if 0 < delta(dist, *t) < margin]
    assert bool(semihard) == (margin > 0)
    expected = loss_and_grad(embeddings, lambda x: brute_force_loss(x, semihard, margin, reduction))
    actual = loss_and_grad(embeddings, lambda x: fused("semihard", margin, reduction)(x, labels))
    assert_matches(actual, expected)


@pytest.mark.parametrize("kind", ["pk", "unbalanced"])
@pytest.mark.parametrize("margin", MARGINS)
def test_mean_reduction_of_all_triplets_matches_brute_force(kind: str, margin: float) -> None:
    embeddings, labels = make_batch(kind, seed=3)
    triplets = brute_force_triplets(labels)
    expected = loss_and_grad(embeddings, lambda x: brute_force_loss(x, triplets, margin, "mean"))
    actual = loss_and_grad(embeddings, lambda x: fused("all", margin, "mean")(x, labels))
    assert_matches(actual, expected)


@pytest.mark.parametrize("kind", ["pk", "unbalanced"])
@pytest.mark.parametrize("margin", (*MARGINS, 2.5))
def test_difficulty_counts_match_brute_force_and_partition(kind: str, margin: float) -> None:
    embeddings, labels = make_batch(kind, seed=4)
    dist = unit_dist(embeddings).double().numpy()
    deltas = [delta(dist, *t) for t in brute_force_triplets(labels)]
    expected = {
        "easy": sum(d >= margin and d > 0 for d in deltas),
        "semihard": sum(0 < d < margin for d in deltas),
        "hard": sum(d <= 0 for d in deltas),
        "valid": len(deltas),
    }
    counts = difficulty_counts(BatchGeometry.from_embeddings(embeddings, labels), margin).to_dict()
    assert counts == expected
    assert counts["easy"] + counts["semihard"] + counts["hard"] == counts["valid"]


def test_counts_treat_a_tie_at_zero_margin_as_hard() -> None:
    # d(0,1) = d(0,2): δ = 0 is hard with zero loss; (1, 0, 2) is easy; nothing is nonzero.
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    step = triplet_step(embeddings, labels, 0.0, build_miner("all"))
    assert step.counts.to_dict() == {"easy": 1, "semihard": 0, "hard": 1, "valid": 2}
    assert step.loss.item() == 0


def test_difficulty_counts_add_up_over_batches() -> None:
    total = DifficultyCounts.zero()
    for seed in range(3):
        embeddings, labels = make_batch("pk", seed=seed)
        total = total + difficulty_counts(BatchGeometry.from_embeddings(embeddings, labels), 0.1)
    counts = total.to_dict()
    assert counts["valid"] == 3 * 32 * 3 * 28
    assert counts["easy"] + counts["semihard"] + counts["hard"] == counts["valid"]


@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean"])
@pytest.mark.parametrize("miner", MINERS.names())
@pytest.mark.parametrize(
    "labels", [[3] * 6, list(range(6)), [7]], ids=["one-class", "all-distinct", "single"]
)
def test_batch_without_valid_triplets_gives_zero_with_a_gradient(
    labels: list[int], miner: str, reduction: Reduction
) -> None:
    embeddings = torch.randn(len(labels), 8, generator=torch.Generator().manual_seed(5))
    leaf = embeddings.requires_grad_()
    step = triplet_step(leaf, torch.tensor(labels), 0.3, build_miner(miner), reduction)
    step.loss.backward()
    assert step.loss.item() == 0
    assert step.counts.to_dict() == {"easy": 0, "semihard": 0, "hard": 0, "valid": 0}
    assert leaf.grad is not None and torch.all(leaf.grad == 0)


@pytest.mark.parametrize("miner", MINERS.names())
@pytest.mark.parametrize("same_label", [True, False])
def test_coinciding_embeddings_keep_loss_and_gradient_finite(miner: str, same_label: bool) -> None:
    embeddings, labels = make_batch("pk", seed=6)
    embeddings[1] = embeddings[0]
    embeddings[5] = embeddings[0] * 2  # coincides after normalisation
    if not same_label:
        labels = labels.clone()
        labels[1] = labels[5] = labels[0] + 1
    leaf = embeddings.requires_grad_()
    loss = triplet_step(leaf, labels, 0.2, build_miner(miner)).loss
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert leaf.grad is not None and torch.all(torch.isfinite(leaf.grad))


def test_large_batch_runs_forward_and_backward_in_quadratic_memory() -> None:
    # B = 512: a B³ float tensor alone would take 512 MiB; the fused path stays O(B²).
    generator = torch.Generator().manual_seed(7)
    embeddings = torch.randn(512, 128, generator=generator).requires_grad_()
    labels = torch.arange(128).repeat_interleave(4)
    step = triplet_step(embeddings, labels, 0.2, build_miner("all"))
    step.loss.backward()
    EffectiveMarginReservoir(generator).add(step.geometry)
    assert embeddings.grad is not None and torch.all(torch.isfinite(embeddings.grad))
    assert torch.isfinite(step.loss)
    assert step.counts.to_dict()["valid"] == 512 * 3 * 508


def test_loss_rejects_a_negative_margin_and_an_unknown_reduction() -> None:
    embeddings, labels = make_batch("pk")
    geometry = BatchGeometry.from_embeddings(embeddings, labels)
    selection = build_miner("all").select(geometry, 0.1)
    with pytest.raises(ValueError, match="margin"):
        triplet_margin_loss(geometry, selection, -0.1)
    with pytest.raises(ValueError, match="mean_nonzero"):
        triplet_margin_loss(geometry, selection, 0.1, "sum")  # type: ignore[arg-type]


def all_deltas(embeddings: Tensor, labels: Tensor) -> np.ndarray:
    dist = unit_dist(embeddings).double().numpy()
    return np.array([delta(dist, *t) for t in brute_force_triplets(labels)])


def cdf_at(values: np.ndarray, points: list[float]) -> list[float]:
    """The exact CDF of δ over all triplets, evaluated at estimated quantiles."""
    return [float(np.mean(values <= point)) for point in points]


QUANTILE_KEYS = ("effective_margin_p10", "effective_margin_p50", "effective_margin_p90")
LEVELS = (0.1, 0.5, 0.9)


def test_reservoir_quantiles_estimate_the_exact_quantiles_deterministically() -> None:
    embeddings, labels = make_batch("pk", seed=8)
    exact = all_deltas(embeddings, labels)
    geometry = BatchGeometry.from_embeddings(embeddings, labels)

    def estimate(seed: int) -> dict[str, float]:
        reservoir = EffectiveMarginReservoir(
            torch.Generator().manual_seed(seed), samples_per_batch=2048, capacity=65536
        )
        for _ in range(4):
            reservoir.add(geometry)
        return reservoir.quantiles()

    quantiles = estimate(0)
    assert quantiles == estimate(0)
    assert quantiles != estimate(1)
    assert len(exact) < 65536
    # n = 8192 uniform draws: by the DKW inequality the sample CDF is within ε = 0.03 of the exact
    # one everywhere with probability ≥ 1 − 2·exp(−2nε²) > 1 − 1e-6, so F(estimate) ≈ level.
    reached = cdf_at(exact, [quantiles[key] for key in QUANTILE_KEYS])
    np.testing.assert_allclose(reached, LEVELS, atol=0.03)
    # Values too: 80% of the 2,688 δ lie in a span of 0.6, so a 0.03 CDF slack moves a quantile
    # by about 0.01 here; 0.05 leaves room for the sparser tails.
    np.testing.assert_allclose(
        [quantiles[key] for key in QUANTILE_KEYS], np.quantile(exact, LEVELS), atol=0.05
    )


def test_full_reservoir_weighs_batches_by_their_number_of_valid_triplets() -> None:
    # 11,520 valid triplets in the big batch against 216 in the small, spread-out one: an
    # unweighted pool would put half its samples on the small batch and miss the quantiles.
    big = (
        torch.randn(64, 16, generator=torch.Generator().manual_seed(9)),
        torch.arange(16).repeat_interleave(4),
    )
    small = (
        torch.randn(12, 2, generator=torch.Generator().manual_seed(10)),
        torch.arange(4).repeat_interleave(3),
    )
    reservoir = EffectiveMarginReservoir(torch.Generator().manual_seed(0), capacity=4096)
    for _ in range(20):
        for embeddings, labels in (big, small):
            reservoir.add(BatchGeometry.from_embeddings(embeddings, labels))
    quantiles = reservoir.quantiles()
    values = np.concatenate([all_deltas(*big), all_deltas(*small)])
    # 4,096 kept draws: DKW with ε = 0.04 fails with probability < 2·exp(−13) ≈ 5e-6.
    reached = cdf_at(values, [quantiles[key] for key in QUANTILE_KEYS])
    np.testing.assert_allclose(reached, LEVELS, atol=0.04)


def test_reservoir_keeps_at_most_capacity_and_reports_nan_without_valid_triplets() -> None:
    reservoir = EffectiveMarginReservoir(torch.Generator().manual_seed(0))
    assert all(math.isnan(value) for value in reservoir.quantiles().values())
    reservoir.add(
        BatchGeometry.from_embeddings(torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    )
    assert all(math.isnan(value) for value in reservoir.quantiles().values())
    assert set(reservoir.quantiles()) == set(QUANTILE_KEYS)

    small = EffectiveMarginReservoir(
        torch.Generator().manual_seed(0), samples_per_batch=64, capacity=100
    )
    embeddings, labels = make_batch("pk")
    for _ in range(3):
        small.add(BatchGeometry.from_embeddings(embeddings, labels))
    assert len(small) == 100
