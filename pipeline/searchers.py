"""Searchers: config names to Ray Tune search algorithms, one registry.

Every searcher sees the same validated :class:`SearchSpace`; Optuna-backed ones keep their study
in memory or, with ``storage``, in an RDB under a unique study name so sweeps never mix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from pipeline.coordinate_search import CoordinateSearch
from pipeline.search_space import SearchSpace
from trainables.registry import Registry


@dataclass(frozen=True)
class SearcherRequest:
    """What a searcher factory is given."""

    space: SearchSpace
    seed: int
    study_name: str
    storage: str | None = None
    #: The base config, flattened to dotted paths: where a searcher that needs a start begins.
    start: Mapping[str, Any] = field(default_factory=dict)


SearcherFactory = Callable[[SearcherRequest], Searcher]
SEARCHERS: Registry[SearcherFactory] = Registry("searcher")


def _optuna(request: SearcherRequest, sampler: optuna.samplers.BaseSampler) -> Searcher:
    storage = optuna.storages.RDBStorage(request.storage) if request.storage else None
    return OptunaSearch(
        space=request.space.optuna_space(),
        metric=request.space.metric,
        mode=request.space.mode,
        sampler=sampler,
        study_name=request.study_name,
        storage=storage,
    )


@SEARCHERS.register("tpe")
def tpe_searcher(request: SearcherRequest) -> Searcher:
    """Optuna's TPE, seeded; with concurrency > 1 the order of suggestions is not reproducible."""
    return _optuna(request, optuna.samplers.TPESampler(seed=request.seed))


@SEARCHERS.register("random")
def random_searcher(request: SearcherRequest) -> Searcher:
    """Uniform random search: the budget-matched reference every smarter searcher must beat."""
    return _optuna(request, optuna.samplers.RandomSampler(seed=request.seed))


@SEARCHERS.register("qmc")
def qmc_searcher(request: SearcherRequest) -> Searcher:
    """Scrambled Sobol points: random search with better coverage of small budgets."""
    return _optuna(request, optuna.samplers.QMCSampler(seed=request.seed, scramble=True))


@SEARCHERS.register("coordinate")
def coordinate_searcher(request: SearcherRequest) -> Searcher:
    """Coordinate descent from the base config: one parameter at a time, shrinking steps."""
    return CoordinateSearch(request.space, seed=request.seed, start=request.start)


def build_searcher(name: str, request: SearcherRequest) -> Searcher:
    return SEARCHERS.get(name)(request)
