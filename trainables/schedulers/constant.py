"""The fixed-margin baseline."""

from __future__ import annotations

from margin_tune.trainables.schedulers.base import EpochStats, MarginScheduler


class ConstantMargin(MarginScheduler):
    """μ never changes: the baseline every scheduler is compared with."""

    def step(self, epoch: int, stats: EpochStats) -> float:
        return self.margin
