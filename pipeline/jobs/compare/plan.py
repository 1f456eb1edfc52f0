"""A comparison's plan: what its input check needs of the protocol, without the protocol.

The check (``margin_tune.pipeline.api.comparison``) plans every split and method's sweep
before Ray starts; these are the pieces of the protocol it needs, kept apart from
:mod:`~margin_tune.pipeline.jobs.compare.run`, which imports Ray Tune, MLflow and pandas, so
that those are imported while Ray comes up (as for a ``tune``:
:mod:`~margin_tune.pipeline.sweep.plan`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from margin_tune.pipeline.jobs.compare.spec import CompareSpec
from margin_tune.pipeline.sweep.plan import SweepOptions
from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError


def split_config(base: Config, split: int) -> Config:
    """The base config on class split ``split``."""
    return dataclasses.replace(base, dataset=dataclasses.replace(base.dataset, split_seed=split))


def check_split_layout(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse a comparison written before the per-split layout (one flat ``sweeps/`` folder)."""
    if not all(isinstance(ids, dict) for ids in manifest["sweep_ids"].values()):
        raise ConfigError(
            "DIR",
            f"{out} was written by a margin-tune before comparisons ran per class split "
            "(splits/<seed>/...); it cannot be resumed or synced by this version",
        )


def method_options(spec: CompareSpec, method: str, options: SweepOptions) -> SweepOptions:
    """How ``method`` is tuned: by the searcher, or for a method with ``population`` by a
    population of ``options.trials`` members (each trains the whole budget: the trial-epochs
    any other method may spend)."""
    if method not in spec.populations:
        return options
    return dataclasses.replace(
        options, population=options.trials, perturbation_interval=spec.populations[method]
    )
