"""The triplet margin loss, fused: summed from rank intervals and prefix sums, never per triplet."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

from margin_tune.trainables.geometry import (
    BatchGeometry,
    DifficultyCounts,
    difficulty_counts,
)
from margin_tune.trainables.losses.base import Loss, LossTerms
from margin_tune.trainables.miners.base import TripletMiner, TripletSelection

Reduction = Literal["mean_nonzero", "mean"]


def triplet_margin_loss(
    geometry: BatchGeometry,
    selection: TripletSelection,
    margin: float,
    reduction: Reduction = "mean_nonzero",
) -> Tensor:
    """Mean of max(0, d(a,p) − d(a,n) + μ) over the selected triplets (see ``triplet_terms``)."""
    return triplet_terms(geometry, selection, margin, reduction).total


def triplet_terms(
    geometry: BatchGeometry,
    selection: TripletSelection,
    margin: float,
    reduction: Reduction = "mean_nonzero",
) -> LossTerms:
    """The triplet margin loss over the selected triplets, and its positive and entropy terms.

    For a selected pair (a, p), a negative has positive loss exactly when d(a,n) < d(a,p) + μ,
    i.e. its rank is below v = #{n : d(a,n) < d(a,p) + μ}. Within the selected ranks [lo, hi)
    those are [lo, min(hi, v)), and their summed loss is cnt·(d(a,p) + μ) minus a prefix-sum
    difference, so cost and memory are O(B²) while values and gradients match the per-triplet
    loss. On those triplets the hinge is linear, so the mean splits exactly into a positive term
    (the mean of d(a,p), which pulls) and an entropy term (the mean of μ − d(a,n), which pushes)
    that add up to the loss.

    Args:
        geometry: the batch's distances and sorted negatives.
        selection: the miner's (anchor, positive) pairs and negative rank intervals.
        margin: μ ≥ 0, passed per call because schedulers change it between epochs.
        reduction: ``mean_nonzero`` averages over triplets with positive loss, as
            pytorch-metric-learning's ``AvgNonZeroReducer`` does; ``mean`` over all selected.

    Returns:
        0-d total, positive and entropy terms; 0 (still attached to the graph) when nothing is
        averaged over.
    """
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    if reduction not in get_args(Reduction):
        raise ValueError(f"reduction must be one of {get_args(Reduction)}, got {reduction!r}")
    dist = geometry.dist
    lo = torch.where(selection.pair_mask, selection.neg_lo, 0)
    hi = torch.where(selection.pair_mask, selection.neg_hi, 0)
    violating = geometry.negatives_within(margin, inclusive=False)
    hi_loss = torch.maximum(torch.minimum(hi, violating), lo)
    count = (hi_loss - lo).double()
    neg_sum = geometry.neg_prefix.gather(1, hi_loss) - geometry.neg_prefix.gather(1, lo)
    divisor = count.sum() if reduction == "mean_nonzero" else (hi - lo).clamp(min=0).sum()
    # With nothing to average, every count is 0 and so are the sums: dividing by 1 keeps the graph.
    divisor = divisor.clamp(min=1)
    positive = (count * dist.double()).sum() / divisor
    entropy = (count * margin - neg_sum).sum() / divisor
    return LossTerms(
        (positive + entropy).to(dist.dtype), positive.to(dist.dtype), entropy.to(dist.dtype)
    )


class TripletLoss(Loss):
    """The triplet margin loss over the miner's triplets, μ from the margin scheduler.

    Its positive and entropy terms (see :func:`triplet_terms`) are logged and add up to the loss;
    ``loss.balance`` does not weigh them.
    """

    def __call__(self, geometry: BatchGeometry, margin: float) -> LossTerms:
        selection = self.miner.select(geometry, margin)
        return triplet_terms(geometry, selection, margin, self.config.reduction)


class TripletStep(NamedTuple):
    """What the training loop needs from one batch."""

    loss: Tensor
    counts: DifficultyCounts
    geometry: BatchGeometry


def triplet_step(
    embeddings: Tensor,
    labels: Tensor,
    margin: float,
    miner: TripletMiner,
    reduction: Reduction = "mean_nonzero",
) -> TripletStep:
    """Loss and difficulty counts of one batch from a single shared geometry.

    The geometry is returned too so the caller can feed epoch statistics (e.g.
    ``EffectiveMarginReservoir.add``) without recomputing distances.
    """
    geometry = BatchGeometry.from_embeddings(embeddings, labels)
    selection = miner.select(geometry, margin)
    loss = triplet_margin_loss(geometry, selection, margin, reduction)
    return TripletStep(loss, difficulty_counts(geometry, margin), geometry)
