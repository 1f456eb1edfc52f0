"""The monotonically increasing baseline (in the spirit of LITM, Zhang et al. 2018)."""

from __future__ import annotations

from types import MappingProxyType

from margin_tune.trainables.schedulers.base import EpochStats, MarginScheduler, clip_margin


class LinearMargin(MarginScheduler):
    """μ_t = min(μ₀ + rate·(t − 1), max_margin): rises on a fixed clock, blind to difficulty.

    It isolates what a difficulty-driven scheduler adds over simply growing the margin.
    """

    parameters = ("initial_margin", "rate", "max_margin")
    labels = MappingProxyType({**MarginScheduler.labels, "rate": "rate"})

    def step(self, epoch: int, stats: EpochStats) -> float:
        config = self.config
        self.margin = clip_margin(
            config.initial_margin + config.rate * epoch, config.min_margin, config.max_margin
        )
        return self.margin
