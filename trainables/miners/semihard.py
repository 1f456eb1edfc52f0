"""Semi-hard triplets: negatives farther than the positive but inside the margin."""

from __future__ import annotations

from margin_tune.trainables.geometry import BatchGeometry
from margin_tune.trainables.miners.base import TripletMiner, TripletSelection


class SemiHardMiner(TripletMiner):
    """Selects triplets with 0 < δ < μ, where δ = d(a,n) − d(a,p).

    These are the negative ranks between the hard and the easy ones, so the selection is one
    interval per pair; at μ = 0 it is empty and the loss is 0.
    """

    def select(self, geometry: BatchGeometry, margin: float) -> TripletSelection:
        hard_end, easy_start = geometry.difficulty_bounds(margin)
        return TripletSelection(pair_mask=geometry.pos_mask, neg_lo=hard_end, neg_hi=easy_start)
