"""Every valid triplet: the loss itself then weighs them by how much they violate the margin."""

from __future__ import annotations

import torch

from margin_tune.trainables.geometry import BatchGeometry
from margin_tune.trainables.miners.base import TripletMiner, TripletSelection


class AllTripletsMiner(TripletMiner):
    """Selects all valid triplets, like PML's ``TripletMarginMiner(type_of_triplets="all")``.

    PML's miner drops triplets with δ > μ, but those have zero loss, so under ``mean_nonzero``
    the two agree; under ``mean`` this miner also counts the easy triplets in the divisor.
    """

    def select(self, geometry: BatchGeometry, margin: float) -> TripletSelection:
        neg_hi = geometry.num_neg.unsqueeze(1).expand_as(geometry.pos_mask)
        return TripletSelection(
            pair_mask=geometry.pos_mask, neg_lo=torch.zeros_like(neg_hi), neg_hi=neg_hi
        )
