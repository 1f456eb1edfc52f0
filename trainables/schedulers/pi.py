"""Our controller variant: a proportional-integral loop on the easy ratio."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from margin_tune.trainables.config import MarginConfig
from margin_tune.trainables.schedulers.base import EpochStats, MarginScheduler, clip_margin


class ProportionalIntegralMargin(MarginScheduler):
    """μ = clip(μ₀ + kp·e_t + ki·Σe, min_margin, max_margin) with e = easy_ratio − target.

    Too many easy triplets (e > 0) push μ up, too few pull it down, and the integral removes the
    steady-state offset a step rule leaves. Anti-windup: an epoch whose error would push a clipped
    μ further into its bound is not integrated, so the controller recovers at once when the sign
    of the error changes.
    """

    parameters = ("initial_margin", "target_easy_ratio", "kp", "ki", "min_margin", "max_margin")
    labels = MappingProxyType({**MarginScheduler.labels, "kp": "kp", "ki": "ki"})

    def __init__(self, config: MarginConfig) -> None:
        super().__init__(config)
        self.integral = 0.0

    def _output(self, error: float, integral: float) -> float:
        config = self.config
        return config.initial_margin + config.kp * error + config.ki * integral

    def step(self, epoch: int, stats: EpochStats) -> float:
        error = stats.easy_ratio - self.config.target_easy_ratio
        if error != error:  # NaN: no valid triplet this epoch
            return self.margin
        config = self.config
        integral = self.integral + error
        unclipped = self._output(error, integral)
        margin = clip_margin(unclipped, config.min_margin, config.max_margin)
        saturated = margin != unclipped and (unclipped > margin) == (error > 0)
        if not saturated:
            self.integral = integral
        self.margin = margin
        return self.margin

    def state_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "integral": self.integral}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.integral = float(state["integral"])
