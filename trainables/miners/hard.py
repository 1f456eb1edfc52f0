"""Batch-hard mining: one triplet per anchor, its farthest positive and nearest negative."""

from __future__ import annotations

import torch

from margin_tune.trainables.geometry import BatchGeometry
from margin_tune.trainables.miners.base import TripletMiner, TripletSelection


class BatchHardMiner(TripletMiner):
    """Selects, per anchor with a positive and a negative, the hardest positive and negative.

    Matches pytorch-metric-learning's ``BatchHardMiner``; the nearest negative is rank 0 of the
    anchor's sorted negatives, so the interval is [0, 1).
    """

    def select(self, geometry: BatchGeometry, margin: float) -> TripletSelection:
        pos_mask = geometry.pos_mask
        farthest = geometry.dist.detach().masked_fill(~pos_mask, -torch.inf).argmax(dim=1)
        has_triplet = pos_mask.any(dim=1) & (geometry.num_neg > 0)
        pair_mask = torch.zeros_like(pos_mask)
        pair_mask[torch.arange(len(farthest), device=farthest.device), farthest] = has_triplet
        return TripletSelection(
            pair_mask=pair_mask,
            neg_lo=torch.zeros_like(pos_mask, dtype=torch.long),
            neg_hi=pair_mask.long(),
        )
