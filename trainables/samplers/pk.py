"""P classes x K samples per batch, the standard batch for triplet mining."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from margin_tune.trainables.samplers.base import BatchSampler, EpochContext


class PKSampler(BatchSampler):
    """Each batch holds ``classes_per_batch`` random classes with ``samples_per_class`` each.

    Every anchor then has K−1 positives and (P−1)·K negatives, so every batch has valid
    triplets. A class smaller than K contributes all its samples plus repeats.
    """

    def batches(self, context: EpochContext) -> Iterator[np.ndarray]:
        rng = context.rng
        for _ in range(self.num_batches):
            chosen = rng.choice(
                len(self.classes), size=self.config.classes_per_batch, replace=False
            )
            yield np.concatenate(
                [self.draw_from_class(c, self.config.samples_per_class, rng) for c in chosen]
            )
