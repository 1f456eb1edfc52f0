"""Losses: one file per loss and one registry; the batch geometry they share with the miners
lies below both, in :mod:`margin_tune.trainables.geometry`."""

from __future__ import annotations

from margin_tune.trainables.config import LossConfig
from margin_tune.trainables.geometry import (
    BatchGeometry,
    DifficultyCounts,
    EffectiveMarginReservoir,
    difficulty_counts,
)
from margin_tune.trainables.losses.base import BalancedLoss, Loss, LossTerms
from margin_tune.trainables.losses.contrastive import ContrastiveLoss, negative_pair_counts
from margin_tune.trainables.losses.ntxent import NTXentLoss
from margin_tune.trainables.losses.triplet import (
    Reduction,
    TripletLoss,
    TripletStep,
    triplet_margin_loss,
    triplet_step,
    triplet_terms,
)
from margin_tune.trainables.miners.base import TripletMiner
from margin_tune.trainables.registry import Registry

LOSSES: Registry[type[Loss]] = Registry("loss")
LOSSES.register("triplet")(TripletLoss)
LOSSES.register("contrastive")(ContrastiveLoss)
LOSSES.register("ntxent")(NTXentLoss)


def build_loss(config: LossConfig, miner: TripletMiner) -> Loss:
    return LOSSES.get(config.name)(config, miner)


__all__ = [
    "LOSSES",
    "BalancedLoss",
    "BatchGeometry",
    "ContrastiveLoss",
    "DifficultyCounts",
    "EffectiveMarginReservoir",
    "Loss",
    "LossTerms",
    "NTXentLoss",
    "Reduction",
    "TripletLoss",
    "TripletStep",
    "build_loss",
    "difficulty_counts",
    "negative_pair_counts",
    "triplet_margin_loss",
    "triplet_step",
    "triplet_terms",
]
