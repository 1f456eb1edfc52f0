"""Miner registry and the structure of every miner's selection."""

from __future__ import annotations

import pytest
import torch

from margin_tune.trainables.losses import BatchGeometry
from margin_tune.trainables.miners import MINERS, TripletMiner, TripletSelection, build_miner


def make_geometry(seed: int) -> BatchGeometry:
    """An unbalanced batch with singleton classes, so some anchors have no positive."""
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([1, 4, 2, 1, 5, 3, 1])
    labels = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    return BatchGeometry.from_embeddings(torch.randn(len(labels), 6, generator=generator), labels)


def test_registry_lists_the_three_miners_and_builds_them() -> None:
    assert MINERS.names() == ["all", "hard", "semihard"]
    assert all(isinstance(build_miner(name), TripletMiner) for name in MINERS.names())


def test_unknown_miner_raises_key_error_listing_the_names() -> None:
    with pytest.raises(KeyError, match="unknown miner 'easy'; known: all, hard, semihard"):
        build_miner("easy")


@pytest.mark.parametrize("margin", [0.0, 0.2, 1.5])
@pytest.mark.parametrize("name", MINERS.names())
def test_every_selected_triplet_is_valid(name: str, margin: float) -> None:
    for seed in range(3):
        geometry = make_geometry(seed)
        selection = build_miner(name).select(geometry, margin)
        size = geometry.pos_mask.shape
        assert selection.pair_mask.shape == selection.neg_lo.shape == selection.neg_hi.shape == size
        assert selection.pair_mask.dtype == torch.bool
        assert selection.neg_lo.dtype == selection.neg_hi.dtype == torch.long
        # Pairs are (anchor, positive) pairs; non-empty intervals address real negative ranks.
        assert not torch.any(selection.pair_mask & ~geometry.pos_mask)
        nonempty = selection.pair_mask & (selection.neg_hi > selection.neg_lo)
        num_neg = geometry.num_neg.unsqueeze(1).expand(size)
        assert torch.all(selection.neg_lo[nonempty] >= 0)
        assert torch.all(selection.neg_hi[nonempty] <= num_neg[nonempty])


def selected_deltas(
    geometry: BatchGeometry, selection: TripletSelection
) -> dict[tuple[int, int], list[float]]:
    """δ of each selected triplet, per (anchor, positive) pair, read off the sorted negatives."""
    found: dict[tuple[int, int], list[float]] = {}
    for a, p in selection.pair_mask.nonzero().tolist():
        lo, hi = selection.neg_lo[a, p].item(), selection.neg_hi[a, p].item()
        d_neg = geometry.sorted_neg[a, lo:hi].detach()
        found[a, p] = sorted((d_neg - geometry.dist[a, p].detach()).tolist())
    return {pair: deltas for pair, deltas in found.items() if deltas}


def assert_same_triplets(
    found: dict[tuple[int, int], list[float]], expected: dict[tuple[int, int], list[float]]
) -> None:
    assert found.keys() == expected.keys()
    for pair, deltas in expected.items():
        assert found[pair] == pytest.approx(deltas, abs=1e-6)


@pytest.mark.parametrize("margin", [0.0, 0.2, 1.5])
def test_semihard_selects_exactly_the_negatives_inside_the_margin(margin: float) -> None:
    geometry = make_geometry(0)
    dist = geometry.dist.detach()
    expected = {}
    for a, p in geometry.pos_mask.nonzero().tolist():
        deltas = [
            (dist[a, n] - dist[a, p]).item()
            for n in range(len(dist))
            if geometry.neg_mask[a, n] and 0 < dist[a, n] - dist[a, p] < margin
        ]
        if deltas:
            expected[a, p] = sorted(deltas)
    assert bool(expected) == (margin > 0)
    selection = build_miner("semihard").select(geometry, margin)
    assert_same_triplets(selected_deltas(geometry, selection), expected)


def test_hard_selects_the_farthest_positive_and_nearest_negative_per_anchor() -> None:
    geometry = make_geometry(1)
    dist = geometry.dist.detach()
    expected = {}
    for a in range(len(dist)):
        positives = geometry.pos_mask[a].nonzero().flatten()
        negatives = geometry.neg_mask[a].nonzero().flatten()
        if len(positives) and len(negatives):
            p = int(positives[dist[a, positives].argmax()])
            expected[a, p] = [(dist[a, negatives].min() - dist[a, p]).item()]
    selection = build_miner("hard").select(geometry, 0.2)
    assert_same_triplets(selected_deltas(geometry, selection), expected)
