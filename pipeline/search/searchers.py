"""Searchers: config names to Ray Tune search algorithms, one registry.

Every searcher sees the same validated :class:`SearchSpace`; Optuna-backed ones keep their study
in memory or, with ``storage``, in a journal file or an RDB under a unique study name so
sweeps never mix (:mod:`~margin_tune.pipeline.search.study`).

A sweep's winner is chosen among the trials that trained the whole epoch budget (see
:mod:`margin_tune.pipeline.sweep.tuner`), so every searcher learns only from those as finished
results: a trial stopped early (by ASHA or a collapse) reaches Optuna as PRUNED, with its last
reported value as its intermediate value, and an errored one as FAILED, whatever it reported
before (:class:`~margin_tune.pipeline.search.budget_search.BudgetOptunaSearch`).

The registry's names are what a sweep's input is checked against, before Ray starts; each
factory imports its Ray Tune search algorithm when it is called, so that checking a sweep
imports no Ray Tune (it is imported while Ray comes up, :mod:`~margin_tune.pipeline.sweep.plan`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from margin_tune.pipeline.search.objectives import Objective
from margin_tune.pipeline.search.space import SearchSpace
from margin_tune.pipeline.search.study import SeedTrial, study_storage
from margin_tune.trainables.registry import Registry

if TYPE_CHECKING:
    from ray.tune.search import Searcher

#: The searchers whose sampler learns from the study's finished trials, so that seeding it
#: from an earlier sweep changes what it suggests.
LEARNING_SEARCHERS = ("tpe",)


@dataclass(frozen=True)
class SearcherRequest:
    """What a searcher factory is given."""

    space: SearchSpace
    seed: int
    study_name: str
    storage: str | None = None
    #: The base config, flattened to dotted paths: where a searcher that needs a start begins.
    start: Mapping[str, Any] = field(default_factory=dict)
    #: Epochs a trial must report to count as finished; shorter ones were stopped early.
    epochs: int = 1
    #: The sweep's number of trials, which sizes TPE's random start-up.
    trials: int = 1
    #: Finished trials of an earlier sweep the study starts with (``--warm-start``), and how
    #: (one of :data:`~margin_tune.pipeline.search.study.SEED_MODES`).
    seeded: tuple[SeedTrial, ...] = ()
    seed_mode: str = "add"
    #: Two or more metrics to optimise at once (``--objectives``); empty: the space's metric.
    objectives: tuple[Objective, ...] = ()


#: TPE draws this share of the budget at random before it models anything ...
STARTUP_SHARE = 0.25
#: ... at least this many trials (TPE needs two observations to split them) ...
MIN_STARTUP_TRIALS = 2
#: ... and at most Optuna's default, which it reaches at 40 trials.
MAX_STARTUP_TRIALS = 10


def startup_trials(trials: int) -> int:
    """Random trials before TPE models: ``clip(ceil(trials / 4), 2, 10)``.

    Optuna's default of 10 makes any budget up to 10 trials pure random search, and 16 trials
    mostly so: 4 trials → 2, 16 → 4, 50 → 10 (Optuna's default from 40 trials on).
    """
    wanted = math.ceil(STARTUP_SHARE * trials)
    return min(MAX_STARTUP_TRIALS, max(MIN_STARTUP_TRIALS, wanted))


SearcherFactory = Callable[[SearcherRequest], "Searcher"]
SEARCHERS: Registry[SearcherFactory] = Registry("searcher")


def _optuna(request: SearcherRequest, sampler: optuna.samplers.BaseSampler) -> Searcher:
    from margin_tune.pipeline.search.budget_search import BudgetOptunaSearch

    storage = study_storage(request.storage)
    objectives = request.objectives
    return BudgetOptunaSearch(
        space=request.space.optuna_space(),
        metric=[o.metric for o in objectives] if objectives else request.space.metric,
        mode=[o.mode for o in objectives] if objectives else request.space.mode,
        sampler=sampler,
        study_name=request.study_name,
        storage=storage,
        epochs=request.epochs,
        seeded=request.seeded,
        seed_mode=request.seed_mode,
    )


@SEARCHERS.register("tpe")
def tpe_searcher(request: SearcherRequest) -> Searcher:
    """Optuna's TPE, seeded, with :func:`startup_trials` random trials for the budget; with
    concurrency > 1 the order of suggestions is not reproducible."""
    sampler = optuna.samplers.TPESampler(
        seed=request.seed, n_startup_trials=startup_trials(request.trials)
    )
    return _optuna(request, sampler)


@SEARCHERS.register("random")
def random_searcher(request: SearcherRequest) -> Searcher:
    """Uniform random search: the budget-matched reference every smarter searcher must beat."""
    return _optuna(request, optuna.samplers.RandomSampler(seed=request.seed))


@SEARCHERS.register("qmc")
def qmc_searcher(request: SearcherRequest) -> Searcher:
    """Scrambled Sobol points: random search with better coverage of small budgets."""
    return _optuna(request, optuna.samplers.QMCSampler(seed=request.seed, scramble=True))


@SEARCHERS.register("nsga2")
def nsga2_searcher(request: SearcherRequest) -> Searcher:
    """Optuna's NSGA-II: a genetic algorithm, for several objectives (``--objectives``), whose
    population (50 trials) keeps the non-dominated configs and breeds from them."""
    return _optuna(request, optuna.samplers.NSGAIISampler(seed=request.seed))


#: The searchers that optimise several objectives at once (``--objectives``).
MULTI_OBJECTIVE_SEARCHERS = ("tpe", "nsga2", "random", "qmc")


@SEARCHERS.register("coordinate")
def coordinate_searcher(request: SearcherRequest) -> Searcher:
    """Coordinate descent from the base config: one parameter at a time, shrinking steps."""
    from margin_tune.pipeline.search.coordinate import CoordinateSearch

    return CoordinateSearch(
        request.space, seed=request.seed, start=request.start, epochs=request.epochs
    )


def __getattr__(name: str) -> Any:
    """``searchers.BudgetOptunaSearch``, where the class was defined before it moved to
    :mod:`~margin_tune.pipeline.search.budget_search`: Ray Tune pickles the searcher into a
    sweep's ``tuner.pkl`` by that name, and ``resume`` of a sweep saved then must still find it.
    Looked up on use (PEP 562), so importing this module still imports no Ray Tune.
    (``SeedTrial``, pickled inside it, is imported here from :mod:`~.study` for the same reason.)
    """
    if name == "BudgetOptunaSearch":
        from margin_tune.pipeline.search.budget_search import BudgetOptunaSearch

        return BudgetOptunaSearch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_searcher(name: str, request: SearcherRequest) -> Searcher:
    return SEARCHERS.get(name)(request)
