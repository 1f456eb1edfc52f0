"""Batch samplers: one file per policy, one registry mapping config names to classes."""

from __future__ import annotations

import numpy as np

from margin_tune.trainables.config import SamplerConfig
from margin_tune.trainables.registry import Registry
from margin_tune.trainables.samplers.base import BatchSampler, EmbedFn, EpochContext
from margin_tune.trainables.samplers.class_representative import ClassRepresentativeSampler
from margin_tune.trainables.samplers.pk import PKSampler

SAMPLERS: Registry[type[BatchSampler]] = Registry("sampler")
SAMPLERS.register("pk")(PKSampler)
SAMPLERS.register("class_representative")(ClassRepresentativeSampler)


def build_sampler(
    config: SamplerConfig, labels: np.ndarray, num_batches: int | None = None
) -> BatchSampler:
    return SAMPLERS.get(config.name)(config, labels, num_batches)


__all__ = ["SAMPLERS", "BatchSampler", "EmbedFn", "EpochContext", "build_sampler"]
