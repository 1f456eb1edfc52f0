"""The contrastive margin loss, split into a positive and an entropy term (Sors et al.)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from margin_tune.trainables.geometry import BatchGeometry, DifficultyCounts
from margin_tune.trainables.losses.base import BalancedLoss, masked_mean


class ContrastiveLoss(BalancedLoss):
    """Positive pairs pulled within ``loss.pos_margin``, negative pairs pushed beyond μ.

    The negative margin is the margin scheduler's μ (starting at ``margin.initial_margin``), so
    every scheduler drives this loss as it drives the triplet loss. Positive term: the
    reduction of max(0, d(a,p) − pos_margin) over positive pairs; entropy term: of
    max(0, μ − d(a,n)) over negative pairs, each reduced on its own (``mean_nonzero``: over its
    non-zero pairs, PML's ``AvgNonZeroReducer``; ``mean``: over all its pairs). At balance 0.5
    this is PML's ``ContrastiveLoss(pos_margin, neg_margin=μ)`` on L2-normalised embeddings.
    """

    def terms(self, geometry: BatchGeometry, margin: float) -> tuple[Tensor, Tensor]:
        nonzero = self.config.reduction == "mean_nonzero"
        dist = geometry.dist
        positive = masked_mean(
            F.relu(dist - self.config.pos_margin), geometry.pos_mask, nonzero=nonzero
        )
        entropy = masked_mean(F.relu(margin - dist), geometry.neg_mask, nonzero=nonzero)
        return positive, entropy

    def difficulty(self, geometry: BatchGeometry, margin: float) -> DifficultyCounts:
        return negative_pair_counts(geometry, margin)


def negative_pair_counts(geometry: BatchGeometry, margin: float) -> DifficultyCounts:
    """Count the batch's ordered negative pairs (a, n) as easy, semi-hard or hard under μ.

    Easy: d(a,n) ≥ μ, already beyond the margin, no loss (the scheduler protocol's "easy").
    Of the rest, hard: no farther than a's farthest positive, so some positive pair of a is
    ranked behind it (the multi-similarity notion of a hard negative pair); semi-hard: the
    others. The three partition the negative pairs; ``valid`` counts them all.
    """
    dist = geometry.dist.detach()
    farthest_positive = dist.where(geometry.pos_mask, -torch.inf).amax(dim=1, keepdim=True)
    easy = geometry.neg_mask & (dist >= margin)
    hard = geometry.neg_mask & ~easy & (dist <= farthest_positive)
    valid = geometry.neg_mask.sum()
    num_easy, num_hard = easy.sum(), hard.sum()
    return DifficultyCounts(
        easy=num_easy, semihard=valid - num_easy - num_hard, hard=num_hard, valid=valid
    )
