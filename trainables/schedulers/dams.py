"""The paper's rule (Tomchak et al., 2026): keep training difficult by raising μ."""

from __future__ import annotations

from margin_tune.trainables.schedulers.base import EpochStats, MarginScheduler, clip_margin


class DifficultyAwareMargin(MarginScheduler):
    """Raise μ by ``step_size`` whenever the epoch's easy ratio reaches ``target_easy_ratio``.

    μ never decreases; ``max_margin`` (optional) caps it. When most triplets already satisfy the
    margin they stop contributing gradient, so a larger μ restores a share of informative ones.
    """

    parameters = ("initial_margin", "target_easy_ratio", "step_size", "max_margin")

    def step(self, epoch: int, stats: EpochStats) -> float:
        if stats.easy_ratio >= self.config.target_easy_ratio:
            self.margin = clip_margin(
                self.margin + self.config.step_size, self.config.min_margin, self.config.max_margin
            )
        return self.margin
