"""Triplet miners: one file per strategy, one registry mapping config names to classes."""

from __future__ import annotations

from trainables.miners.all_triplets import AllTripletsMiner
from trainables.miners.base import TripletMiner, TripletSelection
from trainables.miners.hard import BatchHardMiner
from trainables.miners.semihard import SemiHardMiner
from trainables.registry import Registry

MINERS: Registry[type[TripletMiner]] = Registry("miner")
MINERS.register("all")(AllTripletsMiner)
MINERS.register("semihard")(SemiHardMiner)
MINERS.register("hard")(BatchHardMiner)


def build_miner(name: str) -> TripletMiner:
    return MINERS.get(name)()


__all__ = ["MINERS", "TripletMiner", "TripletSelection", "build_miner"]
