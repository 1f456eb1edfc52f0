"""Our variant of the paper's rule that may also lower μ."""

from __future__ import annotations

from types import MappingProxyType

from margin_tune.trainables.schedulers.base import EpochStats, MarginScheduler, clip_margin


class TwoSidedMargin(MarginScheduler):
    """Raise μ at ``target_easy_ratio`` as the paper does, lower it below target − tolerance.

    The paper's rule cannot undo a step that made training too hard; this one backs off by
    ``step_size`` (not below ``min_margin``) when the easy ratio falls more than ``tolerance``
    under the target. Inside the band [target − tolerance, target) μ holds still.
    """

    parameters = (
        "initial_margin",
        "target_easy_ratio",
        "step_size",
        "tolerance",
        "min_margin",
        "max_margin",
    )
    labels = MappingProxyType({**MarginScheduler.labels, "tolerance": "tol"})

    def step(self, epoch: int, stats: EpochStats) -> float:
        config = self.config
        if stats.easy_ratio >= config.target_easy_ratio:
            self.margin += config.step_size
        elif stats.easy_ratio < config.target_easy_ratio - config.tolerance:
            self.margin -= config.step_size
        self.margin = clip_margin(self.margin, config.min_margin, config.max_margin)
        return self.margin
