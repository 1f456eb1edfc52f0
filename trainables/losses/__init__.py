"""Triplet loss and the batch geometry and difficulty statistics it shares with the miners."""

from __future__ import annotations

from trainables.losses.geometry import (
    BatchGeometry,
    DifficultyCounts,
    EffectiveMarginReservoir,
    difficulty_counts,
)
from trainables.losses.triplet import Reduction, TripletStep, triplet_margin_loss, triplet_step

__all__ = [
    "BatchGeometry",
    "DifficultyCounts",
    "EffectiveMarginReservoir",
    "Reduction",
    "TripletStep",
    "difficulty_counts",
    "triplet_margin_loss",
    "triplet_step",
]
