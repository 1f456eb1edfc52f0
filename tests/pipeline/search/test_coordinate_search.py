"""The coordinate-descent searcher: driven directly, inside real Ray Tune, and from the CLI."""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray
import ray.cloudpickle
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.search.coordinate import CoordinateSearch
from margin_tune.pipeline.search.searchers import SearcherRequest, build_searcher
from margin_tune.pipeline.search.space import SearchSpace, parse_space
from margin_tune.pipeline.sweep.session import ray_session
from margin_tune.trainables.config import Config

#: A separable objective with a known optimum, over the three kinds a space holds: a log-scale
#: learning rate, a uniform margin and an integer batch dimension on a grid of 4.
OPTIMUM = {"train.lr": 10**-2.5, "margin.initial_margin": 0.9, "sampler.classes_per_batch": 20}
SPACE = {
    "metric": "val_roc_auc",
    "mode": "max",
    "parameters": {
        "margin.scheduler": {"distribution": "fixed", "value": "dams"},
        "train.lr": {"distribution": "log_uniform", "low": 1.0e-4, "high": 1.0e-1},
        "margin.initial_margin": {"distribution": "uniform", "low": 0.1, "high": 1.4},
        "sampler.classes_per_batch": {"distribution": "int", "low": 4, "high": 32, "step": 4},
    },
}
BUDGET = 24
#: Enough for seed 0 to find the optimum: the searcher decides the same whatever order a
#: batch's results arrive in, so it suggests in Tune what it suggests in ``drive``.
RAY_BUDGET = 12
SEEDS = range(5)
#: Regret (1 − objective) within which the optimum counts as found.
EPSILON = 0.01


def objective(config: dict[str, Any]) -> float:
    """1 at the optimum, falling quadratically along each coordinate (lr in decades)."""
    return 1.0 - (
        (math.log10(config["train.lr"]) - math.log10(OPTIMUM["train.lr"])) ** 2
        + (config["margin.initial_margin"] - OPTIMUM["margin.initial_margin"]) ** 2
        + ((config["sampler.classes_per_batch"] - OPTIMUM["sampler.classes_per_batch"]) / 8) ** 2
    )


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return parse_space(SPACE, Config(), name="quadratic")


def request(space: SearchSpace, seed: int) -> SearcherRequest:
    return SearcherRequest(space=space, seed=seed, study_name=f"test-{seed}")


def drive(searcher: Searcher, budget: int, start: int = 0) -> list[dict[str, Any]]:
    """Suggest and complete one trial at a time, as Tune does at concurrency 1."""
    suggested = []
    for number in range(start, start + budget):
        config = searcher.suggest(str(number))
        assert isinstance(config, dict)
        suggested.append(config)
        searcher.on_trial_complete(str(number), {"epoch": 1, "val_roc_auc": objective(config)})
    return suggested


def best_regret(configs: list[dict[str, Any]]) -> float:
    return 1.0 - max(objective(c) for c in configs)


def test_finds_the_optimum_where_random_search_with_the_same_budget_does_not(
    space: SearchSpace,
) -> None:
    def regrets(name: str) -> list[float]:
        return [best_regret(drive(build_searcher(name, request(space, s)), BUDGET)) for s in SEEDS]

    coordinate, random = regrets("coordinate"), regrets("random")
    assert max(coordinate) < EPSILON
    assert sum(random) / len(random) > 5 * sum(coordinate) / len(coordinate)
    assert sum(random) / len(random) > EPSILON


def test_suggestions_carry_the_fixed_values_and_the_searched_ones(space: SearchSpace) -> None:
    config = CoordinateSearch(space).suggest("0")
    assert isinstance(config, dict)
    assert set(config) == {p.path for p in space.parameters}
    assert config["margin.scheduler"] == "dams"
    assert isinstance(config["sampler.classes_per_batch"], int)


def test_starts_at_the_base_config_where_the_space_holds_it_else_in_the_middle(
    space: SearchSpace,
) -> None:
    start = {"train.lr": 0.001, "margin.initial_margin": 7.0, "sampler.classes_per_batch": 17}
    config = CoordinateSearch(space, start=start).suggest("0")
    assert isinstance(config, dict)
    assert config["train.lr"] == 0.001
    assert config["margin.initial_margin"] == pytest.approx(0.75)  # 7.0 is out of range
    assert config["sampler.classes_per_batch"] == 16  # snapped to the grid of 4
    middle = CoordinateSearch(space).suggest("0")
    assert isinstance(middle, dict)
    assert middle["train.lr"] == pytest.approx(10**-2.5)  # geometric middle


def test_hands_out_a_batch_concurrently_then_waits_for_its_results(space: SearchSpace) -> None:
    searcher = CoordinateSearch(space, seed=0)
    batch = [searcher.suggest(str(n)) for n in range(3)]  # start point + two neighbours
    assert all(isinstance(c, dict) for c in batch)
    assert len({tuple(sorted(c.items())) for c in batch}) == 3  # type: ignore[union-attr]
    assert searcher.suggest("3") is None  # the batch is out; the next move needs its results
    for n, config in enumerate(batch[:2]):
        searcher.on_trial_complete(str(n), {"epoch": 1, "val_roc_auc": objective(config)})  # type: ignore[arg-type]
        assert searcher.suggest("3") is None
    searcher.on_trial_complete("2", {"epoch": 1, "val_roc_auc": objective(batch[2])})  # type: ignore[arg-type]
    assert isinstance(searcher.suggest("3"), dict)


def test_an_errored_or_metricless_trial_counts_as_the_worst(space: SearchSpace) -> None:
    searcher = CoordinateSearch(space, seed=0)
    batch = [searcher.suggest(str(n)) for n in range(3)]
    searcher.on_trial_complete("0", None, error=True)
    searcher.on_trial_complete("1", {"epoch": 1, "val_roc_auc": 0.5})
    searcher.on_trial_complete("2", {"epoch": 1, "other": 1.0})
    # A trial Tune re-ran after a restore:
    searcher.on_trial_complete("unknown", {"epoch": 1, "val_roc_auc": 2.0})
    incumbent, score = searcher.best
    assert incumbent == {k: v for k, v in batch[1].items() if k != "margin.scheduler"}  # type: ignore[union-attr]
    assert score == 0.5


def test_minimises_when_the_space_says_min() -> None:
    space = parse_space({**SPACE, "metric": "val_eer", "mode": "min"}, Config(), name="min")
    searcher = CoordinateSearch(space, seed=1)
    for number in range(BUDGET):
        config = searcher.suggest(str(number))
        assert isinstance(config, dict)
        searcher.on_trial_complete(str(number), {"epoch": 1, "val_eer": 1.0 - objective(config)})
    assert 1.0 - objective(searcher.best[0]) < EPSILON


def test_ends_when_every_neighbour_of_the_best_was_tried_and_never_repeats() -> None:
    space = parse_space(
        {
            "parameters": {
                "miner.name": {"distribution": "categorical", "choices": ["all", "semihard"]},
                "sampler.samples_per_class": {"distribution": "int", "low": 2, "high": 4},
            }
        },
        Config(),
        name="discrete",
    )
    searcher = CoordinateSearch(space, seed=0)
    seen = []
    for number in range(100):
        config = searcher.suggest(str(number))
        if config == Searcher.FINISHED:
            break
        assert isinstance(config, dict)
        seen.append(tuple(sorted(config.items())))
        score = config["sampler.samples_per_class"] + (config["miner.name"] == "semihard")
        searcher.on_trial_complete(str(number), {"epoch": 1, "val_map_at_r": score})
    assert len(seen) == len(set(seen)) <= 6
    assert searcher.best[0] == {"miner.name": "semihard", "sampler.samples_per_class": 4}


def test_a_restored_searcher_continues_exactly_as_the_original(
    space: SearchSpace, tmp_path: Path
) -> None:
    original = ConcurrencyLimiter(CoordinateSearch(space, seed=3), max_concurrent=2)
    drive(original, 7)
    in_flight = original.suggest("7")  # saved while a trial runs
    assert isinstance(in_flight, dict)
    original.searcher.save_to_dir(str(tmp_path), session_str="s")  # what Tune calls
    restored = CoordinateSearch(space, seed=99)  # the saved order wins over the new seed
    restored.restore_from_dir(str(tmp_path))
    for searcher in (original.searcher, restored):
        searcher.on_trial_complete("7", {"epoch": 1, "val_roc_auc": objective(in_flight)})
    assert drive(restored, 10, start=8) == drive(original.searcher, 10, start=8)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    with ray_session(None, num_cpus=2):
        yield
    assert not ray.is_initialized()


def timed_objective(config: dict[str, Any]) -> None:
    """A Tune function trainable: the objective, with when it ran, after a short wait.

    Ray's workers cannot import this test module, so it travels by value (Ray pickles with its
    own copy of cloudpickle, which is the one to tell).
    """
    started = time.time()
    time.sleep(1.0)  # longer than starting an actor, so a batch's two trials overlap
    tune.report({"val_roc_auc": objective(config), "started": started, "ended": time.time()})


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
def test_in_real_ray_tune_runs_trials_concurrently_and_finds_the_optimum(
    local_ray: None, space: SearchSpace, tmp_path: Path
) -> None:
    tuner = tune.Tuner(
        timed_objective,
        tune_config=tune.TuneConfig(
            search_alg=build_searcher("coordinate", request(space, 0)),
            num_samples=RAY_BUDGET,
            max_concurrent_trials=2,
            # A reused actor that frees up first takes the batch's next trial before a second
            # actor has started: fresh actors make both trials of a batch start together.
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="quadratic", verbose=0),
    )
    results = tuner.fit().get_dataframe()
    assert len(results) == RAY_BUDGET
    assert 1.0 - results["val_roc_auc"].max() < EPSILON
    spans = sorted(zip(results["started"], results["ended"], strict=True))
    overlaps = sum(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    assert overlaps >= RAY_BUDGET // 4, spans  # batches ran two trials at once


@pytest.mark.slow
def test_tune_command_with_the_coordinate_searcher(
    local_ray: None, tmp_path: Path, tiny_overrides: list[str]
) -> None:
    out = tmp_path / "sweep"
    # The space's P reaches 32 classes per batch: every bound must fit the training classes.
    overrides = [*tiny_overrides, "dataset.num_classes=64"]
    sets = [item for o in overrides for item in ("--set", o)]
    code = main(
        [
            *("tune", "--space", "contrastive", "--trials", "3", "--searcher", "coordinate"),
            *("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--out", str(out)),
            *("--grace-period", "1", *sets),
        ]
    )
    assert code == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3
    searched = trials[["config.train.lr", "config.loss.balance", "config.margin.initial_margin"]]
    # It starts at the base config (its values lie in the space), then moves one at a time.
    assert (searched.to_numpy() == [0.001, 0.5, 0.2]).all(axis=1).any()
    configs = trials.filter(like="config.").to_numpy()
    for row in configs:
        assert any((row != other).sum() == 1 for other in configs)
