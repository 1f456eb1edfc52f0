"""Network collapse: stop a trial whose embeddings have all fallen onto one point.

Hard negative mining is the usual road to collapse (Xu et al., "Mathematical Justification of
Hard Negative Mining via Isometric Approximation Theorem"): the network maps everything to one
point, the triplet loss sits at the margin with no gradient to leave, and every later epoch is
wasted. The trial measures the spread of a fixed validation probe each epoch
(:func:`margin_tune.trainables.metrics.embedding_spread`); this monitor turns those measurements
into a
decision that survives a checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from margin_tune.trainables.config import CollapseConfig
from margin_tune.trainables.metrics import EmbeddingSpread

PROBE_SIZE = 512
"""Validation samples whose spread is measured: enough for a stable mean over 130k pairs,
few enough that the measurement costs nothing next to the validation pass it reuses."""


def choose_probe(num_samples: int, seed: int) -> np.ndarray:
    """Sorted positions of up to :data:`PROBE_SIZE` samples, the same for every epoch."""
    size = min(num_samples, PROBE_SIZE)
    return np.sort(np.random.default_rng(seed).choice(num_samples, size=size, replace=False))


class CollapseMonitor:
    """Counts consecutive epochs whose mean pairwise distance is below ``collapse.threshold``.

    The trial has collapsed once that count reaches ``collapse.patience`` (and ``enabled`` is
    true); one epoch at or above the threshold resets the count. The count is the whole state:
    it goes into the trial's checkpoint so that a resumed trial stops at the same epoch.
    """

    def __init__(self, config: CollapseConfig) -> None:
        self.config = config
        self.epochs_below = 0

    def update(self, spread: EmbeddingSpread) -> bool:
        """Record one epoch's spread; whether the trial has now collapsed."""
        below = spread.mean_pairwise_distance < self.config.threshold
        self.epochs_below = self.epochs_below + 1 if below else 0
        return self.collapsed

    @property
    def collapsed(self) -> bool:
        return self.config.enabled and self.epochs_below >= self.config.patience

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_below": self.epochs_below}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_below = int(state["epochs_below"])
