"""The margin-scheduler protocol and the statistics it reads."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from margin_tune.trainables.config import MarginConfig


@dataclass(frozen=True)
class EpochStats:
    """Difficulty statistics of one epoch, counted over *all* valid triplets of every batch.

    The miner decides which triplets enter the loss; these counts never depend on it, so a
    scheduler sees the same difficulty whatever the miner. Under the ``contrastive`` loss, whose
    μ is the negative margin, the counts are over negative pairs instead (easy: beyond μ).
    """

    easy: int
    semihard: int
    hard: int
    valid: int
    train_loss: float = math.nan

    @property
    def easy_ratio(self) -> float:
        return self.easy / self.valid if self.valid else math.nan

    @property
    def semihard_ratio(self) -> float:
        return self.semihard / self.valid if self.valid else math.nan

    @property
    def hard_ratio(self) -> float:
        return self.hard / self.valid if self.valid else math.nan


class MarginScheduler(ABC):
    """Decides μ for the next epoch from the difficulty of the one that just ended.

    ``step`` is called once at the end of epoch ``epoch`` (numbered from 1) and returns the margin
    for epoch ``epoch + 1``. All state lives in ``state_dict()`` so a trial resumes exactly.
    An epoch without valid triplets (easy ratio NaN) leaves μ unchanged in every scheduler.
    """

    #: Config fields (under ``margin.``) this scheduler reads: what grids and ablations vary.
    parameters: tuple[str, ...] = ("initial_margin",)
    #: Short names of the parameters a run's name shows (``dams μ0=0.20 target=0.95 ...``);
    #: a parameter without one (a bound, say) is left out of the name. The paper's three here;
    #: a scheduler adds its own: ``labels = {**MarginScheduler.labels, "rate": "rate"}``.
    labels: Mapping[str, str] = MappingProxyType(
        {"initial_margin": "μ0", "target_easy_ratio": "target", "step_size": "step"}
    )

    def __init__(self, config: MarginConfig) -> None:
        self.config = config
        self.margin = config.initial_margin

    @abstractmethod
    def step(self, epoch: int, stats: EpochStats) -> float:
        """Return μ for epoch ``epoch + 1``."""

    def state_dict(self) -> dict[str, Any]:
        return {"margin": self.margin}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.margin = float(state["margin"])


def clip_margin(value: float, lower: float, upper: float | None) -> float:
    """Keep μ within [lower, upper]; ``upper`` None means unbounded."""
    value = max(value, lower)
    return value if upper is None else min(value, upper)
