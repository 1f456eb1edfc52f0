"""The contrastive and NT-Xent losses: PML as the oracle, the balance, the margin they schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product

import pytest
import torch
from gradients import assert_matches, loss_and_grad
from pytorch_metric_learning import losses, reducers
from torch import Tensor

from margin_tune.trainables.config import LossConfig
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.losses import (
    LOSSES,
    BatchGeometry,
    LossTerms,
    build_loss,
    negative_pair_counts,
    triplet_terms,
)
from margin_tune.trainables.miners import build_miner
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import train

SEEDS = (0, 1, 2)


def make_batch(kind: str, seed: int, dim: int = 8) -> tuple[Tensor, Tensor]:
    """Unnormalised float64 embeddings and labels; ``unbalanced`` has singleton classes.

    Eight dimensions put pairs at all distances in [0, 2], so margins split them.
    """
    generator = torch.Generator().manual_seed(seed)
    if kind == "pk":
        labels = torch.arange(6).repeat_interleave(4)
    else:
        sizes = (1, 1, 6, 3, 2, 1, 5, 4)
        labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        labels = labels[torch.randperm(len(labels), generator=generator)]
    embeddings = torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    return embeddings, labels


def ours(name: str, margin: float, **config: object) -> Callable[[Tensor, Tensor], LossTerms]:
    loss = build_loss(LossConfig(name=name, **config), build_miner("all"))  # type: ignore[arg-type]
    return lambda x, labels: loss(BatchGeometry.from_embeddings(x, labels), margin)


# --- PML as the oracle at balance 0.5 ---------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean"])
@pytest.mark.parametrize(("pos_margin", "neg_margin"), [(0.0, 1.0), (0.3, 1.2), (0.5, 0.5)])
@pytest.mark.parametrize(("kind", "seed"), [*product(["pk"], SEEDS), ("unbalanced", 0)])
def test_contrastive_matches_pml_contrastive_loss(
    kind: str, seed: int, pos_margin: float, neg_margin: float, reduction: str
) -> None:
    embeddings, labels = make_batch(kind, seed)
    nonzero = reduction == "mean_nonzero"
    reducer = reducers.AvgNonZeroReducer() if nonzero else reducers.MeanReducer()
    pml = losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin, reducer=reducer)
    loss = ours("contrastive", neg_margin, pos_margin=pos_margin, reduction=reduction)
    expected = loss_and_grad(embeddings, lambda x: pml(x, labels))
    actual = loss_and_grad(embeddings, lambda x: loss(x, labels).total)
    assert expected[0] > 0
    assert_matches(actual, expected)


@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize(("kind", "seed"), [*product(["pk"], SEEDS), ("unbalanced", 0)])
def test_ntxent_matches_pml_ntxent_loss(kind: str, seed: int, temperature: float) -> None:
    embeddings, labels = make_batch(kind, seed)
    pml = losses.NTXentLoss(temperature=temperature)
    loss = ours("ntxent", 0.2, temperature=temperature)
    expected = loss_and_grad(embeddings, lambda x: pml(x, labels))
    actual = loss_and_grad(embeddings, lambda x: loss(x, labels).total)
    assert expected[0] > 0
    assert_matches(actual, expected)


@pytest.mark.parametrize("name", ["contrastive", "ntxent"])
def test_float32_matches_pml_too(name: str) -> None:
    embeddings, labels = make_batch("pk", 0)
    embeddings = embeddings.float()
    pml = losses.ContrastiveLoss() if name == "contrastive" else losses.NTXentLoss()
    loss = ours(name, 1.0)
    expected = loss_and_grad(embeddings, lambda x: pml(x, labels))
    assert_matches(loss_and_grad(embeddings, lambda x: loss(x, labels).total), expected)


@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean"])
@pytest.mark.parametrize("miner", ["all", "semihard", "hard"])
@pytest.mark.parametrize("margin", [0.0, 0.3, 1.0])
def test_triplet_terms_match_brute_force(miner: str, margin: float, reduction: str) -> None:
    """Positive: mean d(a,p), entropy: mean μ − d(a,n), over the selected triplets with loss."""
    embeddings, labels = make_batch("unbalanced", 2)
    geometry = BatchGeometry.from_embeddings(embeddings, labels)
    selection = build_miner(miner).select(geometry, margin)
    dist = geometry.dist.tolist()
    selected = []
    for a, p in torch.nonzero(selection.pair_mask).tolist():
        ranks = range(int(selection.neg_lo[a, p]), int(selection.neg_hi[a, p]))
        negatives = torch.nonzero(geometry.neg_mask[a]).flatten().tolist()
        by_distance = sorted(negatives, key=dist[a].__getitem__)
        selected += [(a, p, by_distance[rank]) for rank in ranks]
    active = [(a, p, n) for a, p, n in selected if dist[a][p] - dist[a][n] + margin > 0]
    divisor = max(len(active) if reduction == "mean_nonzero" else len(selected), 1)
    expected_positive = sum(dist[a][p] for a, p, _ in active) / divisor
    expected_entropy = sum(margin - dist[a][n] for a, _, n in active) / divisor
    terms = triplet_terms(geometry, selection, margin, reduction)  # type: ignore[arg-type]
    assert active or (miner, margin) == ("semihard", 0.0)  # semi-hard needs 0 < δ < μ
    assert float(terms.positive) == pytest.approx(expected_positive, abs=1e-9)
    assert float(terms.entropy) == pytest.approx(expected_entropy, abs=1e-9)
    assert float(terms.total) == pytest.approx(expected_positive + expected_entropy, abs=1e-9)


# --- the balance ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["contrastive", "ntxent"])
def test_balance_weighs_the_two_terms_and_its_extremes_keep_one(name: str) -> None:
    embeddings, labels = make_batch("pk", 0)
    half = ours(name, 1.0)(embeddings, labels)
    assert half.total == pytest.approx(float(half.positive + half.entropy), abs=1e-12)
    assert half.positive != 0 and half.entropy != 0
    for balance in (0.0, 0.2, 0.9, 1.0):
        terms = ours(name, 1.0, balance=balance)(embeddings, labels)
        # The terms do not depend on the balance; only their weights do.
        assert (terms.positive, terms.entropy) == (half.positive, half.entropy)
        expected = 2 * (balance * terms.positive + (1 - balance) * terms.entropy)
        assert terms.total == pytest.approx(float(expected), abs=1e-12)
    only_positive = ours(name, 1.0, balance=1.0)(embeddings, labels)
    only_entropy = ours(name, 1.0, balance=0.0)(embeddings, labels)
    assert only_positive.total == pytest.approx(2 * float(half.positive), abs=1e-12)
    assert only_entropy.total == pytest.approx(2 * float(half.entropy), abs=1e-12)


@pytest.mark.parametrize(
    ("balance", "pml_margins"),
    # PML with neg_margin 0 has no negative term; with pos_margin 2 (the diameter) no positive.
    [(1.0, (0.0, 0.0)), (0.0, (2.0, 1.0))],
)
def test_contrastive_extremes_train_on_one_of_pmls_terms(
    balance: float, pml_margins: tuple[float, float]
) -> None:
    """Balance 1 (0): the gradient of PML's positive (negative) term alone, doubled."""
    embeddings, labels = make_batch("pk", 1)
    pml = losses.ContrastiveLoss(*pml_margins)
    loss = ours("contrastive", 1.0, balance=balance)
    expected = loss_and_grad(embeddings, lambda x: 2 * pml(x, labels))
    assert expected[0] > 0
    assert_matches(loss_and_grad(embeddings, lambda x: loss(x, labels).total), expected)


def test_ntxent_positive_term_is_the_alignment() -> None:
    """Balance 1: the mean of −s(a,p)/τ over positive pairs, doubled, computed directly."""
    embeddings, labels = make_batch("pk", 1)
    positive = (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool)

    def alignment(x: Tensor) -> Tensor:
        unit = torch.nn.functional.normalize(x, dim=1)
        return 2 * -(unit @ unit.T / 0.07)[positive].mean()

    loss = ours("ntxent", 0.0, balance=1.0)
    expected = loss_and_grad(embeddings, alignment)
    assert_matches(loss_and_grad(embeddings, lambda x: loss(x, labels).total), expected)


# --- the difficulty the margin scheduler reads -----------------------------------------------


@pytest.mark.parametrize("margin", [0.0, 0.8, 1.3, 2.5])
@pytest.mark.parametrize(("kind", "seed"), [*product(["pk"], SEEDS), ("unbalanced", 1)])
def test_negative_pair_counts_match_brute_force(kind: str, seed: int, margin: float) -> None:
    embeddings, labels = make_batch(kind, seed)
    geometry = BatchGeometry.from_embeddings(embeddings, labels)
    dist = geometry.dist.tolist()
    names = labels.tolist()
    easy = semihard = hard = valid = 0
    for a, n in product(range(len(names)), repeat=2):
        if names[a] == names[n]:
            continue
        valid += 1
        positives = [dist[a][p] for p in range(len(names)) if p != a and names[p] == names[a]]
        if dist[a][n] >= margin:
            easy += 1
        elif positives and dist[a][n] <= max(positives):
            hard += 1
        else:
            semihard += 1
    counts = negative_pair_counts(geometry, margin).to_dict()
    assert counts == {"easy": easy, "semihard": semihard, "hard": hard, "valid": valid}
    contrastive = build_loss(LossConfig(name="contrastive"), build_miner("all"))
    assert contrastive.difficulty(geometry, margin).to_dict() == counts


def test_easy_negative_pairs_are_those_without_loss() -> None:
    """The scheduler's "easy": exactly the negative pairs that add nothing to the entropy term."""
    embeddings, labels = make_batch("pk", 2)
    geometry = BatchGeometry.from_embeddings(embeddings, labels)
    for margin in (0.5, 1.0, 1.5):
        no_loss = geometry.neg_mask & (torch.relu(margin - geometry.dist) == 0)
        assert negative_pair_counts(geometry, margin).to_dict()["easy"] == int(no_loss.sum())


# --- whole trials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss.name=contrastive", "margin.initial_margin=1.0"],
        ["loss.name=contrastive", "loss.balance=0.3", "loss.reduction=mean"],
        ["loss.name=ntxent", "margin.scheduler=constant", "loss.temperature=0.1"],
    ],
)
def test_a_trial_logs_both_terms_and_they_sum_to_the_loss(
    tiny_overrides: list[str], overrides: list[str]
) -> None:
    config = load_config(overrides=[*tiny_overrides, *overrides])
    result = train(config)
    assert result.stop_reason == "completed"
    balance = config.loss.balance
    for row in result.history:
        assert math.isfinite(row["loss_positive"]) and math.isfinite(row["loss_entropy"])
        weighted = 2 * (balance * row["loss_positive"] + (1 - balance) * row["loss_entropy"])
        assert row["train_loss"] == pytest.approx(weighted, rel=1e-6)
        ratios = row["easy_ratio"] + row["semihard_ratio"] + row["hard_ratio"]
        assert ratios == pytest.approx(1.0)
    assert result.history[-1]["val_roc_auc"] > 0.8


def test_triplet_trial_logs_terms_that_add_up_to_its_loss(tiny_overrides: list[str]) -> None:
    config = load_config(overrides=[*tiny_overrides, "train.epochs=2", "loss.balance=0.9"])
    for row in train(config).history:
        assert row["loss_positive"] > 0
        total = row["loss_positive"] + row["loss_entropy"]
        assert row["train_loss"] == pytest.approx(total, rel=1e-6)


def test_dams_moves_the_contrastive_negative_margin(tiny_overrides: list[str]) -> None:
    """dams raises μ exactly after the epochs whose easy-negative-pair ratio reached its target."""
    config = load_config(
        overrides=[
            *tiny_overrides,
            "train.epochs=6",
            "loss.name=contrastive",
            "margin.initial_margin=0.6",
            "margin.target_easy_ratio=0.9",
            "margin.step_size=0.2",
        ]
    )
    history = train(config).history
    margins = [row["margin"] for row in history]
    assert margins[0] == pytest.approx(0.6)
    for row, next_margin in zip(history, margins[1:], strict=False):
        raised = row["easy_ratio"] >= 0.9
        assert next_margin == pytest.approx(row["margin"] + 0.2 if raised else row["margin"])
    assert margins[-1] > margins[0]
    assert any(row["easy_ratio"] < 0.9 for row in history)


# --- bad configs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        (["loss.balance=1.5"], "loss.balance", "[0, 1]"),
        (["loss.balance=-0.1"], "loss.balance", "[0, 1]"),
        (["loss.temperature=0"], "loss.temperature", "> 0"),
        (["loss.pos_margin=-0.1"], "loss.pos_margin", ">= 0"),
        (["loss.name=arcface"], "loss.name", "allowed: contrastive, ntxent, triplet"),
        (["loss.name=contrastive", "miner.name=semihard"], "miner.name", "admits only miner all"),
        (["loss.name=ntxent", "margin.scheduler=constant", "miner.name=hard"], "miner.name", "all"),
        (["loss.name=ntxent"], "margin.scheduler", "needs scheduler 'constant', got 'dams'"),
    ],
)
def test_bad_loss_configs_name_the_field(overrides: list[str], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=overrides)
    assert caught.value.field == field
    assert fragment in str(caught.value)


def test_every_registered_loss_builds_from_the_default_config() -> None:
    embeddings, labels = make_batch("pk", 0)
    geometry = BatchGeometry.from_embeddings(embeddings, labels)
    for name in LOSSES:
        terms = build_loss(LossConfig(name=name), build_miner("all"))(geometry, 0.2)
        assert torch.isfinite(terms.total)
