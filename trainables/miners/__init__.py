"""Triplet miners: one file per strategy, one registry mapping config names to classes."""

from __future__ import annotations

from margin_tune.trainables.miners.all_triplets import AllTripletsMiner
from margin_tune.trainables.miners.base import TripletMiner, TripletSelection
from margin_tune.trainables.miners.hard import BatchHardMiner
from margin_tune.trainables.miners.semihard import SemiHardMiner
from margin_tune.trainables.registry import Registry

MINERS: Registry[type[TripletMiner]] = Registry("miner")
MINERS.register("all")(AllTripletsMiner)
MINERS.register("semihard")(SemiHardMiner)
MINERS.register("hard")(BatchHardMiner)


def build_miner(name: str) -> TripletMiner:
    return MINERS.get(name)()


__all__ = ["MINERS", "TripletMiner", "TripletSelection", "build_miner"]
