"""P classes x K samples per batch, the standard batch for triplet mining."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from trainables.config import SamplerConfig
from trainables.errors import ConfigError
from trainables.samplers.base import BatchSampler, EpochContext


class PKSampler(BatchSampler):
    """Each batch holds ``classes_per_batch`` random classes with ``samples_per_class`` each.

    Every anchor then has K−1 positives and (P−1)·K negatives, so every batch has valid
    triplets. A class smaller than K contributes all its samples plus repeats.
    """

    def __init__(self, config: SamplerConfig, labels: np.ndarray, num_batches: int | None) -> None:
        super().__init__(config, labels, num_batches)
        if config.classes_per_batch > len(self.classes):
            raise ConfigError(
                "sampler.classes_per_batch",
                f"must be <= the {len(self.classes)} training classes, "
                f"got {config.classes_per_batch}",
            )

    def batches(self, context: EpochContext) -> Iterator[np.ndarray]:
        rng = context.rng
        for _ in range(self.num_batches):
            chosen = rng.choice(
                len(self.classes), size=self.config.classes_per_batch, replace=False
            )
            yield np.concatenate(
                [self.draw_from_class(c, self.config.samples_per_class, rng) for c in chosen]
            )
