"""The batch-sampler protocol: a sampler yields index batches for one epoch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from margin_tune.trainables.config import SamplerConfig
from margin_tune.trainables.errors import ConfigError

EmbedFn = Callable[[np.ndarray], torch.Tensor]
"""Embeds training samples given by index with the current network (no gradient)."""


@dataclass(frozen=True)
class EpochContext:
    """What a sampler is given for one epoch: its random streams and access to the network.

    ``rng`` is derived from (seed, epoch) by the trainer, so an epoch's batches are the same
    whether the trial ran straight through or resumed from a checkpoint. ``seed`` is the trial's
    seed, for a sampler whose draws span epochs: it derives those from (seed, something it can
    compute from ``epoch``) rather than carrying state across a checkpoint.
    """

    epoch: int
    rng: np.random.Generator
    embed: EmbedFn
    seed: int


class BatchSampler(ABC):
    """Yields batches of P classes x K samples, ``num_batches`` per epoch.

    Raises:
        ConfigError: ``sampler.classes_per_batch`` exceeds the number of training classes.
    """

    def __init__(self, config: SamplerConfig, labels: np.ndarray, num_batches: int | None) -> None:
        self.config = config
        self.labels = labels
        self.classes, inverse = np.unique(labels, return_inverse=True)
        self.members = [np.flatnonzero(inverse == index) for index in range(len(self.classes))]
        self.num_batches = num_batches or max(1, len(labels) // self.batch_size)
        if config.classes_per_batch > len(self.classes):
            raise ConfigError(
                "sampler.classes_per_batch",
                f"must be <= the {len(self.classes)} training classes, "
                f"got {config.classes_per_batch}",
            )

    @property
    def batch_size(self) -> int:
        return self.config.classes_per_batch * self.config.samples_per_class

    def __len__(self) -> int:
        return self.num_batches

    @abstractmethod
    def batches(self, context: EpochContext) -> Iterator[np.ndarray]:
        """The epoch's batches, each an int array of training-set indices."""

    def draw_from_class(self, class_index: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` members of a class: distinct while the class has enough, then repeats."""
        return draw_members(self.members[class_index], count, rng)


def draw_members(members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` of ``members``: distinct while there are enough, then every one plus repeats."""
    if len(members) >= count:
        return rng.choice(members, size=count, replace=False)
    extra = rng.choice(members, size=count - len(members), replace=True)
    return np.concatenate([rng.permutation(members), extra])
