"""Class-representative batches with hard negative class mining.

After "Deep Metric Learning with Alternating Projections onto Feasible Sets": each class has one
*representative* sample that every batch holding the class contains, for
``representative_iters`` iterations in a row. Training on those batches alternates projections
onto feasible sets that pin the representatives, a regulariser at no extra cost. Because a class
is summarised by one sample, the classes that are hard to tell apart can be found from one
forward pass over the representatives alone, and batched together.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from margin_tune.trainables.config import SamplerConfig
from margin_tune.trainables.samplers.base import BatchSampler, EpochContext, draw_members

REPRESENTATIVE_STREAM = 0x52455053
"""Tags the representative draws so their stream never coincides with an epoch's stream."""


class ClassRepresentativeSampler(BatchSampler):
    """P classes x K samples per batch; a class's first sample is its current representative.

    Iterations count across epochs: iteration ``g`` (0-based) of the trial is batch
    ``g - (epoch - 1) * num_batches`` of its epoch, and uses the representatives of block
    ``g // representative_iters``. A block's representatives are drawn from (seed, block) only,
    so they stay fixed across an epoch boundary and a resumed trial draws the same ones with no
    sampler state in the checkpoint.

    With ``hard_class_fraction`` > 0, ``round(hard_class_fraction * P)`` of a batch's classes are
    a random seed class and its nearest classes by distance between representative embeddings;
    the rest are random. The representatives are embedded whenever they are redrawn and at the
    start of each epoch (the network state a checkpoint holds), never per batch: one forward pass
    over one sample per class, not over the data. Fewer than two mined classes is no mining.
    """

    def __init__(self, config: SamplerConfig, labels: np.ndarray, num_batches: int | None) -> None:
        super().__init__(config, labels, num_batches)
        self.class_sizes = np.array([len(members) for members in self.members])
        mined = math.floor(config.hard_class_fraction * config.classes_per_batch + 0.5)
        self.mined_classes = mined if mined >= 2 else 0

    def representatives(self, seed: int, block: int) -> np.ndarray:
        """Training-set index of each class's representative (by class index) in a block."""
        rng = np.random.default_rng([REPRESENTATIVE_STREAM, seed, block])
        picks = rng.integers(0, self.class_sizes)
        return np.array([members[pick] for members, pick in zip(self.members, picks, strict=True)])

    def batches(self, context: EpochContext) -> Iterator[np.ndarray]:
        rng = context.rng
        first = (context.epoch - 1) * self.num_batches
        block = -1
        for iteration in range(first, first + self.num_batches):
            if iteration // self.config.representative_iters != block:
                block = iteration // self.config.representative_iters
                representatives = self.representatives(context.seed, block)
                embedded = (
                    context.embed(representatives).detach().double().cpu().numpy()
                    if self.mined_classes
                    else None
                )
            chosen = choose_classes(
                len(self.classes), self.config.classes_per_batch, self.mined_classes, embedded, rng
            )
            yield np.concatenate(
                [self._class_batch(index, representatives[index], rng) for index in chosen]
            )

    def _class_batch(
        self, class_index: int, representative: int, rng: np.random.Generator
    ) -> np.ndarray:
        """The representative first, then K−1 other members (repeats only if too few)."""
        members = self.members[class_index]
        others = members[members != representative]
        pool = others if len(others) else members
        rest = draw_members(pool, self.config.samples_per_class - 1, rng)
        return np.concatenate([[representative], rest])


def choose_classes(
    num_classes: int,
    count: int,
    mined: int,
    representative_embeddings: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """``count`` distinct class indices: ``mined`` near a random seed class, the rest random.

    The mined group comes first: the seed class, then the ``mined - 1`` classes whose
    representative embeddings lie nearest the seed's (ties to the lower class index). With
    ``mined`` 0 this is exactly ``rng.choice(num_classes, count, replace=False)``.
    """
    if mined == 0 or representative_embeddings is None:
        return rng.choice(num_classes, size=count, replace=False)
    seed_class = int(rng.integers(num_classes))
    distance = np.linalg.norm(
        representative_embeddings - representative_embeddings[seed_class], axis=1
    )
    distance[seed_class] = -np.inf
    group = np.argsort(distance, kind="stable")[:mined]
    rest = rng.choice(
        np.setdiff1d(np.arange(num_classes), group), size=count - mined, replace=False
    )
    return np.concatenate([group, rest])
