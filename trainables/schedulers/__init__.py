"""Margin schedulers: one file per policy, one registry mapping config names to classes."""

from __future__ import annotations

from trainables.config import MarginConfig
from trainables.registry import Registry
from trainables.schedulers.base import EpochStats, MarginScheduler
from trainables.schedulers.constant import ConstantMargin
from trainables.schedulers.dams import DifficultyAwareMargin
from trainables.schedulers.linear import LinearMargin
from trainables.schedulers.pi import ProportionalIntegralMargin
from trainables.schedulers.two_sided import TwoSidedMargin

SCHEDULERS: Registry[type[MarginScheduler]] = Registry("scheduler")
SCHEDULERS.register("constant")(ConstantMargin)
SCHEDULERS.register("linear")(LinearMargin)
SCHEDULERS.register("dams")(DifficultyAwareMargin)
SCHEDULERS.register("two_sided")(TwoSidedMargin)
SCHEDULERS.register("pi")(ProportionalIntegralMargin)


def build_scheduler(config: MarginConfig) -> MarginScheduler:
    return SCHEDULERS.get(config.scheduler)(config)


__all__ = ["SCHEDULERS", "EpochStats", "MarginScheduler", "build_scheduler"]
