"""``tune --population N``: a margin schedule learned online by population-based training.

A margin schedule is a function of training time, and population-based training searches
exactly that: N trials train at once; every ``--perturbation-interval`` epochs the worst
quarter is replaced by copies of the best quarter (restored from their checkpoints of that
epoch) with ``target_easy_ratio``, ``step_size`` and the learning rate perturbed (x0.8 or
x1.2, or drawn again from the space with probability 1/4, kept inside the space's range). The
other searched parameters are drawn once, as a random search would, and kept.

The population is synchronous (Ray's ``synch=True``): every member stops at the same epoch
before any is copied, so a copy continues from the epoch it stopped at, and the population
trains exactly N x ``train.epochs`` trial-epochs, the budget of an N-trial sweep. Ray runs
PBT only without a search algorithm, so ``--searcher`` is refused with it.

Each member's checkpoint carries its *schedule*: per epoch, μ, the learning rate, the target
easy ratio and step size it trained with, and which Tune trial trained it. A copy inherits its
donor's rows, so the best member's last checkpoint holds the whole learned schedule with its
lineage, which the sweep writes as ``schedule.csv`` and a plot, and logs to MLflow.

The checks here run before Ray starts; Ray Tune and pandas are imported where the scheduler is
built and the schedule read, once Ray is coming up (:mod:`~margin_tune.pipeline.sweep.plan`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from margin_tune.pipeline.search.space import Parameter, SearchSpace, apply_overrides
from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from ray.tune.schedulers import PopulationBasedTraining

#: What population-based training perturbs, where the space searches it.
PERTURBED = ("margin.target_easy_ratio", "margin.step_size", "train.lr")
#: The quarter of the population that is replaced, and the one it is copied from.
QUANTILE = 0.25
RESAMPLE_PROBABILITY = 0.25
#: What a checkpoint keeps of the schedule, beside the trial's state.
SCHEDULE_KEY = "pbt_schedule"
#: The columns of one schedule row.
SCHEDULE_COLUMNS = ("epoch", "margin", "train.lr", *PERTURBED[:2], "trial_id")
#: The learned schedule, in the sweep's directory and among its run's artifacts.
SCHEDULE_FILE = "schedule.csv"


def perturbed(space: SearchSpace) -> tuple[Parameter, ...]:
    """The space's parameters population-based training perturbs.

    Raises:
        ConfigError: naming ``--population`` when the space searches none of them.
    """
    found = tuple(p for p in space.searched if p.path in PERTURBED)
    if not found:
        raise ConfigError(
            "--population",
            f"space {space.name} searches none of {', '.join(PERTURBED)}: there is nothing "
            "for population-based training to perturb",
        )
    for parameter in found:
        if parameter.distribution not in ("uniform", "log_uniform"):
            raise ConfigError(
                f"space.parameters.{parameter.path}",
                f"{parameter.distribution}: population-based training perturbs continuous "
                "parameters; allowed: uniform, log_uniform",
            )
    return found


def check_population(population: int, trials: int, interval: int, epochs: int) -> None:
    """The population's shape, against the sweep's budget.

    Raises:
        ConfigError: naming ``--population`` or ``--perturbation-interval``.
    """
    if population < 2:
        raise ConfigError(
            "--population", f"must be >= 2 (a member copies another), got {population}"
        )
    if trials != population:
        raise ConfigError(
            "--population",
            f"{population} members each train the whole budget, {population} trials; --trials "
            f"is {trials}: give the same number or leave --trials out",
        )
    check_perturbation_interval(interval, epochs)


def check_perturbation_interval(
    interval: int, epochs: int, field: str = "--perturbation-interval"
) -> None:
    """An exploit-and-perturb step every ``interval`` epochs must come before the last epoch.

    Raises:
        ConfigError: naming ``field`` (a comparison names its method's key).
    """
    if not 1 <= interval < epochs:
        raise ConfigError(
            field,
            f"must be between 1 and train.epochs - 1 ({epochs - 1}) epochs, got {interval}",
        )


def domain(parameter: Parameter) -> Any:
    """The parameter as a Ray Tune search domain (or its fixed value)."""
    from ray import tune

    if parameter.distribution == "fixed":
        return parameter.value
    if parameter.distribution == "uniform":
        return tune.uniform(float(parameter.low or 0), float(parameter.high or 0))
    if parameter.distribution == "log_uniform":
        return tune.loguniform(float(parameter.low or 0), float(parameter.high or 0))
    if parameter.distribution == "int":
        return tune.qrandint(int(parameter.low or 0), int(parameter.high or 0), parameter.step or 1)
    return tune.choice(list(parameter.choices))


def param_space(space: SearchSpace) -> dict[str, Any]:
    """Every parameter of the space, as Tune draws a member's first config."""
    return {parameter.path: domain(parameter) for parameter in space.parameters}


class _Clip:
    """Keeps a perturbed value inside the space's range (Ray multiplies without bounds: a
    target easy ratio of 0.95 x 1.2 is not a ratio). A class, so it pickles."""

    def __init__(self, bounds: Mapping[str, tuple[float, float]]) -> None:
        self.bounds = dict(bounds)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for path, (low, high) in self.bounds.items():
            if path in config:
                config[path] = min(max(float(config[path]), low), high)
        return config


def population_scheduler(space: SearchSpace, interval: int, seed: int) -> PopulationBasedTraining:
    """Synchronous PBT over :func:`perturbed`, seeded (Ray draws its perturbations from
    Python's ``random``)."""
    from ray.tune.schedulers import PopulationBasedTraining

    random.seed(seed)
    mutated = perturbed(space)
    return PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=interval,
        hyperparam_mutations={p.path: domain(p) for p in mutated},
        quantile_fraction=QUANTILE,
        resample_probability=RESAMPLE_PROBABILITY,
        custom_explore_fn=_Clip({p.path: (float(p.low or 0), float(p.high or 0)) for p in mutated}),
        synch=True,
    )


def schedule_row(epoch: int, margin: float, config: Any, trial_id: str) -> dict[str, Any]:
    """One epoch of a member's schedule: μ and the values it trained with, and who trained it."""
    return {
        "epoch": epoch,
        "margin": float(margin),
        "train.lr": float(config.train.lr),
        "margin.target_easy_ratio": float(config.margin.target_easy_ratio),
        "margin.step_size": float(config.margin.step_size),
        "trial_id": trial_id,
    }


def replay_config(config: Config, schedule: pd.DataFrame) -> Config:
    """``config`` replaying ``schedule`` from the first epoch: the ``replay`` margin scheduler
    on its μ per epoch and ``train.lr_schedule`` on its learning rates.

    This, not the best member's last values, is what the population found: its network trained
    under every row of the schedule, many of them another member's. A re-training (a
    comparison's, with seeds no member used) replays it as a fixed schedule.
    """
    return apply_overrides(
        config,
        {
            "margin.scheduler": "replay",
            "margin.schedule": [float(v) for v in schedule["margin"]],
            "train.lr_schedule": [float(v) for v in schedule["train.lr"]],
        },
    )


def learned_schedule(checkpoint: Path) -> pd.DataFrame:
    """The schedule a member's checkpoint (``trial.pt``) holds, one row per epoch."""
    import pandas as pd

    state = torch.load(checkpoint, weights_only=True)
    rows: Sequence[Mapping[str, Any]] = state.get(SCHEDULE_KEY, [])
    return pd.DataFrame(list(rows), columns=list(SCHEDULE_COLUMNS))
