"""Margin schedulers: one file per policy, one registry mapping config names to classes."""

from __future__ import annotations

from margin_tune.trainables.config import MarginConfig
from margin_tune.trainables.registry import Registry
from margin_tune.trainables.schedulers.base import EpochStats, MarginScheduler
from margin_tune.trainables.schedulers.constant import ConstantMargin
from margin_tune.trainables.schedulers.dams import DifficultyAwareMargin
from margin_tune.trainables.schedulers.linear import LinearMargin
from margin_tune.trainables.schedulers.pi import ProportionalIntegralMargin
from margin_tune.trainables.schedulers.replay import ReplayMargin, with_schedule_file
from margin_tune.trainables.schedulers.two_sided import TwoSidedMargin

SCHEDULERS: Registry[type[MarginScheduler]] = Registry("scheduler")
SCHEDULERS.register("constant")(ConstantMargin)
SCHEDULERS.register("linear")(LinearMargin)
SCHEDULERS.register("dams")(DifficultyAwareMargin)
SCHEDULERS.register("two_sided")(TwoSidedMargin)
SCHEDULERS.register("pi")(ProportionalIntegralMargin)
SCHEDULERS.register("replay")(ReplayMargin)


def build_scheduler(config: MarginConfig) -> MarginScheduler:
    return SCHEDULERS.get(config.scheduler)(config)


__all__ = [
    "SCHEDULERS",
    "EpochStats",
    "MarginScheduler",
    "build_scheduler",
    "with_schedule_file",
]
