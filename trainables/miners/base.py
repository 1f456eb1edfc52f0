"""The miner protocol: which triplets of a batch enter the loss, as pairs and rank intervals."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from margin_tune.trainables.geometry import BatchGeometry


@dataclass(frozen=True)
class TripletSelection:
    """Selected triplets in O(B²) form rather than as a B³ list.

    Triplet (a, p, n) is selected when ``pair_mask[a, p]`` holds and n's rank among a's negatives
    sorted by distance lies in [``neg_lo[a, p]``, ``neg_hi[a, p]``). An empty or reversed
    interval selects nothing.

    Attributes:
        pair_mask: (B, B) bool, the (anchor, positive) pairs taking part; a subset of valid pairs.
        neg_lo: (B, B) long, first selected negative rank.
        neg_hi: (B, B) long, one past the last selected rank; at most the anchor's ``num_neg``.
    """

    pair_mask: Tensor
    neg_lo: Tensor
    neg_hi: Tensor


class TripletMiner(ABC):
    """Chooses the triplets that enter the loss; it never affects the difficulty statistics."""

    @abstractmethod
    def select(self, geometry: BatchGeometry, margin: float) -> TripletSelection:
        """Select triplets of the batch under the current margin μ."""
