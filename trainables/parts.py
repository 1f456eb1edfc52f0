"""The registries of every kind of part, and the rules that link parts, in one place above them.

Parts (datasets, models, losses, miners, samplers, schedulers) import their config classes from
:mod:`margin_tune.trainables.config`, which imports no registry; this module imports the
registries, so a config is built there and its names are checked here, and no import runs in a
circle (``tests/test_layering.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from margin_tune.trainables.config import Config, build_config, read_config_data
from margin_tune.trainables.data import DATASETS
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.losses import LOSSES
from margin_tune.trainables.miners import MINERS
from margin_tune.trainables.models import MODELS
from margin_tune.trainables.registry import Registry
from margin_tune.trainables.samplers import SAMPLERS
from margin_tune.trainables.schedulers import SCHEDULERS, with_schedule_file

#: Every registry of a trial's parts, by the role a config names (``margin.scheduler`` names a
#: ``scheduler``).
REGISTRIES: dict[str, Registry[Any]] = {
    "dataset": DATASETS,
    "model": MODELS,
    "loss": LOSSES,
    "miner": MINERS,
    "sampler": SAMPLERS,
    "scheduler": SCHEDULERS,
}


def added_parts() -> dict[str, dict[str, Any]]:
    """The parts this process registered at run time, by role: what a sweep ships to the
    processes that run its trials (Ray pickles a class defined in a script by value)."""
    return {role: added for role, registry in REGISTRIES.items() if (added := registry.added())}


def restore_parts(parts: Mapping[str, Mapping[str, Any]]) -> None:
    """Register, in a trial's process, what :func:`added_parts` returned in the driver."""
    for role, added in parts.items():
        REGISTRIES[role].restore(added)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (the packaged default when ``path`` is None), apply ``--set``
    overrides, build it and check it.

    Raises:
        ConfigError: unreadable file, YAML error, unknown key, wrong type or out-of-range value,
            unknown part name, or parts that do not fit together.
    """
    return config_from_dict(read_config_data(path, overrides))


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a Config; registry names are checked against the registries. A
    ``margin.schedule`` that names a file is read into numbers first (the ``replay`` scheduler)."""
    config = build_config(with_schedule_file(data))
    check_registered_names(config)
    return config


def check_registered_names(config: Config) -> None:
    """Fail on a part name that no registry knows, listing the known names."""
    for field_name, value, registry in (
        ("dataset.name", config.dataset.name, DATASETS),
        ("model.name", config.model.name, MODELS),
        ("loss.name", config.loss.name, LOSSES),
        ("miner.name", config.miner.name, MINERS),
        ("sampler.name", config.sampler.name, SAMPLERS),
        ("margin.scheduler", config.margin.scheduler, SCHEDULERS),
    ):
        if value not in registry:
            raise ConfigError(
                field_name, f"unknown value {value!r}; allowed: {', '.join(registry.names())}"
            )
    loss = LOSSES.get(config.loss.name)
    if loss.miners is not None and config.miner.name not in loss.miners:
        raise ConfigError(
            "miner.name",
            f"loss {config.loss.name!r} uses every pair of the batch and admits only miner "
            f"{', '.join(loss.miners)}, got {config.miner.name!r}",
        )
    if not loss.uses_margin and config.margin.scheduler != "constant":
        raise ConfigError(
            "margin.scheduler",
            f"loss {config.loss.name!r} has no margin to schedule and needs scheduler "
            f"'constant', got {config.margin.scheduler!r}",
        )
