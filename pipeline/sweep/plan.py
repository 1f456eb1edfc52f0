"""A sweep planned: its options, and every input checked before anything starts.

Everything a sweep is given is checked here (``plan_sweep``), and its Ray session is started
here (``sweep_cluster``), importing as little as the checks need: the config, the space,
torch for the probe trials, Optuna's distributions. Ray Tune, MLflow's client and pandas,
which the run needs and the check does not, are imported by
:mod:`~margin_tune.pipeline.sweep.tuner` once Ray is coming up on its thread, so the 2-3 s
those imports take pass while Ray's daemons start (P9 in bench/RESULTS.md). A refused input
still starts nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from margin_tune.pipeline.outputs.names import check_experiment_name
from margin_tune.pipeline.search.objectives import (
    Objective,
    check_reported,
    objectives_text,
    parse_objectives,
    reported_metrics,
)
from margin_tune.pipeline.search.searchers import MULTI_OBJECTIVE_SEARCHERS, SEARCHERS
from margin_tune.pipeline.search.space import SearchSpace, apply_overrides
from margin_tune.pipeline.sweep.population import check_population, perturbed
from margin_tune.pipeline.sweep.session import local_resources, ray_session
from margin_tune.pipeline.tracking.store import check_tracking_uri
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples, load_dataset, recall_ks
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.trial import Trial

if TYPE_CHECKING:
    from margin_tune.pipeline.sweep.warm_start import WarmStart

#: A checkpoint (save + copy to the trial's storage) took ~15 ms here, 5% of a 0.3-s epoch; one
#: every 10 s bounds that to a fraction of a percent, and a crash loses at most 10 s a trial.
DEFAULT_CHECKPOINT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class SweepOptions:
    """The common flags of ``tune``, ``compare`` and ``ablate``."""

    trials: int
    concurrency: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    searcher: str = "tpe"
    seed: int = 0
    storage: str | None = None
    grace_period: int = 2
    reduction_factor: float = 2.0
    early_stopping: bool = True
    experiment: str = "margin-tune"
    tracking_uri: str | None = None
    address: str | None = None
    max_failures: int = 0
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S
    #: ``val_map_at_r:max,epoch_seconds:min``: several metrics at once (``tune`` only); empty:
    #: the space's metric alone.
    objectives: str = ""
    #: ``tune --population N``: population-based training of N members (0: off), which
    #: exploit and perturb every ``perturbation_interval`` epochs.
    population: int = 0
    perturbation_interval: int = 2

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError("--trials", f"must be >= 1, got {self.trials}")
        if self.concurrency < 1:
            raise ConfigError("--concurrency", f"must be >= 1, got {self.concurrency}")
        if not 0 < self.cpus_per_trial < math.inf:
            raise ConfigError(
                "--cpus-per-trial", f"must be a number > 0, got {self.cpus_per_trial}"
            )
        if not 0 <= self.gpus_per_trial < math.inf:
            raise ConfigError(
                "--gpus-per-trial", f"must be a number >= 0, got {self.gpus_per_trial}"
            )
        check_experiment_name(self.experiment)
        if self.searcher not in SEARCHERS:
            raise ConfigError(
                "--searcher",
                f"unknown value {self.searcher!r}; allowed: {', '.join(SEARCHERS.names())}",
            )
        if self.grace_period < 1:
            raise ConfigError("--grace-period", f"must be >= 1, got {self.grace_period}")
        if self.reduction_factor <= 1:
            raise ConfigError("--reduction-factor", f"must be > 1, got {self.reduction_factor}")
        if self.max_failures < 0:
            raise ConfigError("--max-failures", f"must be >= 0, got {self.max_failures}")
        if not 0 <= self.checkpoint_interval_s < float("inf"):
            raise ConfigError(
                "--checkpoint-interval",
                f"must be a number of seconds >= 0, got {self.checkpoint_interval_s}",
            )
        if self.objectives:
            # Kept in one spelling: the run's param, the manifest and resume agree.
            object.__setattr__(
                self, "objectives", objectives_text(parse_objectives(self.objectives))
            )
            if self.searcher not in MULTI_OBJECTIVE_SEARCHERS:
                raise ConfigError(
                    "--searcher",
                    f"{self.searcher} optimises one metric; allowed with --objectives: "
                    f"{', '.join(MULTI_OBJECTIVE_SEARCHERS)}",
                )
            if self.early_stopping:
                raise ConfigError(
                    "--objectives",
                    "ASHA stops trials by one metric, and would cut trials that are best on "
                    "another objective; add --no-early-stopping (every trial then trains its "
                    "whole budget)",
                )

        if self.population < 0:
            raise ConfigError("--population", f"must be >= 2, got {self.population}")
        if self.population and self.objectives:
            raise ConfigError(
                "--population",
                "population-based training ranks by one metric; not with --objectives",
            )

    @property
    def objective_list(self) -> tuple[Objective, ...]:
        """The parsed :attr:`objectives`; empty for a single-metric sweep."""
        return parse_objectives(self.objectives) if self.objectives else ()


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep: everything ``run_sweep`` needs, nothing started yet."""

    name: str
    base: Config
    space: SearchSpace
    options: SweepOptions
    out: Path
    dataset: Samples
    sweep_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: An earlier sweep's trials the study starts with (``tune --warm-start``).
    warm_start: WarmStart | None = None


def plan_sweep(
    name: str,
    base: Config,
    space: SearchSpace,
    options: SweepOptions,
    out: Path,
    *,
    sweep_id: str | None = None,
    dataset: Samples | None = None,
    warm_start: WarmStart | None = None,
) -> SweepPlan:
    """Validate the sweep end to end: a trial at every bound of the space must construct.

    Building a ``Trial`` loads the data and checks split, sampler and model sizes against it,
    so a bad input fails here, before Ray, MLflow or any output directory exists. Every extreme
    of every parameter is built (the others at their first value), not only the first: a
    ``classes_per_batch`` whose upper bound exceeds the training classes would otherwise fail
    inside Ray, where the error is lost. The probes run on the CPU (the driver of a cluster may
    have no GPU); ``train.device=cuda`` without a GPU is refused for a local sweep. ``dataset``:
    the data ``base.dataset`` loads, when the caller has it already (a comparison plans every
    split and method on one dataset: the class split is drawn by each trial, not by the loader).
    """
    if options.early_stopping and options.grace_period > base.train.epochs:
        raise ConfigError(
            "--grace-period",
            f"must be <= train.epochs ({base.train.epochs}), got {options.grace_period}",
        )
    if base.train.device == "cuda" and not options.address and not _cuda_available():
        raise ConfigError(
            "train.device", "cuda, but this machine has no CUDA device; allowed here: auto, cpu"
        )
    if options.population:
        check_population(
            options.population, options.trials, options.perturbation_interval, base.train.epochs
        )
        perturbed(space)
    objectives = options.objective_list
    if objectives:
        check_reported(objectives, reported_metrics(recall_ks(base)))
        # The first objective is the primary one: progress, best_* and the winner's network.
        space = replace(space, metric=objectives[0].metric, mode=objectives[0].mode)
    if dataset is None:
        dataset = load_dataset(base.dataset)
    first = {p.path: p.extremes()[0] for p in space.parameters}
    probes: list[tuple[str | None, Any, dict[str, Any]]] = [(None, None, first)]
    for parameter in space.parameters:
        for value in parameter.extremes()[1:]:
            probes.append((parameter.path, value, {**first, parameter.path: value}))
    for path, value, values in probes:
        try:
            Trial(apply_overrides(base, {**values, "train.device": "cpu"}), dataset=dataset)
        except (ConfigError, ValueError) as error:
            if path is None:
                if isinstance(error, ConfigError):
                    raise
                raise ConfigError("dataset", f"{base.dataset.name}: {error}") from None
            raise ConfigError(
                f"space.parameters.{path}",
                f"value {value!r} cannot run on dataset {base.dataset.name}: {error}",
            ) from None
    plan = SweepPlan(name, base, space, options, out, dataset, warm_start=warm_start)
    return plan if sweep_id is None else replace(plan, sweep_id=sweep_id)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@contextmanager
def sweep_cluster(options: SweepOptions) -> Iterator[None]:
    """The Ray session a sweep runs in, once the trials' resources are known to fit.

    Without ``--address`` the check runs before Ray starts, against what the local Ray will get,
    so a bad request starts nothing; a joined cluster is checked once connected. A local Ray
    starts in the background (:mod:`~margin_tune.pipeline.sweep.session`).
    """
    if options.tracking_uri is not None:
        check_tracking_uri(options.tracking_uri)
    if not options.address:
        check_cluster_resources(options, local_resources())
    with ray_session(options.address, background=True):
        if options.address:
            check_cluster_resources(options, [node for node in ray.nodes() if node.get("Alive")])
        yield


def check_cluster_resources(options: SweepOptions, nodes: list[dict[str, Any]]) -> None:
    """Refuse trials no node can ever place, instead of letting them pend forever.

    Ray Tune keeps a trial PENDING as long as no node offers its resources; on a fixed cluster
    (the local one, or one joined without an autoscaler) that is forever.
    """
    gpus = sum(node["Resources"].get("GPU", 0) for node in nodes)
    if options.gpus_per_trial > 0 and not any(
        node["Resources"].get("GPU", 0) >= options.gpus_per_trial for node in nodes
    ):
        raise ConfigError(
            "--gpus-per-trial",
            f"{options.gpus_per_trial:g} GPU per trial, but no node of the Ray cluster has that "
            f"many ({gpus:g} GPUs in all); use 0 on a CPU-only cluster",
        )
    most_cpus = max((node["Resources"].get("CPU", 0) for node in nodes), default=0)
    if options.cpus_per_trial > most_cpus:
        raise ConfigError(
            "--cpus-per-trial",
            f"{options.cpus_per_trial:g} CPUs per trial, but the largest node of the Ray "
            f"cluster has {most_cpus:g}",
        )
