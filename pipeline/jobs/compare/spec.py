"""``compare.yaml``: what a fair comparison of methods is, validated at the edge.

::

    base: null                 # a trial config file; null → the packaged default
    set: [train.epochs=12]     # overrides on the base, as with --set
    methods:                   # name → search space (packaged name or path)
      dams: dams
      two_sided: two_sided
      constant: constant
      linear: linear
      # pbt_schedule:          # a schedule learned by population-based training, replayed
      #   space: dams
      #   population: {perturbation_interval: 3}
    baselines: [constant, linear]
    metric: val_map_at_r       # the primary metric: every space tunes it, the table tests it
    budget: {trials: 16, epochs: 12}
    searcher: tpe
    seeds: 10                  # re-training seeds per split, disjoint from the tuning seed
    split_seed: 0              # the first class split
    splits: 3                  # the whole protocol repeated on class splits split_seed, +1, +2

Every method gets the same budget, searcher, seed policy and class splits; the final table is on
test classes only. A method with ``population`` is tuned by population-based training instead of
the searcher: ``budget.trials`` members train the whole ``budget.epochs`` each (the most any
other method may spend), exploiting and perturbing every ``perturbation_interval`` epochs; its
winner is the best member's learned schedule (μ and learning rate per epoch), which the
re-trainings replay from scratch with the ``replay`` scheduler.

The primary ``metric`` is the validation metric every space optimises and whose test
counterpart (``val_map_at_r`` → ``test_map_at_r``) carries the corrected paired tests; the other
test metrics are reported as secondary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from margin_tune.pipeline.outputs.names import check_file_name
from margin_tune.pipeline.search.space import (
    DEFAULT_METRIC,
    SearchSpace,
    load_space,
)
from margin_tune.search_spaces import packaged_spaces
from margin_tune.trainables.config import MAX_SEED, Config, read_yaml
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import TUNABLE_METRICS, VALIDATION_PREFIX, best_mode
from margin_tune.trainables.parts import config_from_dict, load_config

DEFAULT_METHODS = {
    "dams": "dams",
    "two_sided": "two_sided",
    "constant": "constant",
    "linear": "linear",
}
BASELINE_SCHEDULERS = ("constant", "linear")


#: Bounds on what one comparison repeats: re-training seeds per split, and class splits.
MAX_SEEDS = 1000
MAX_SPLITS = 100
# The primary metric when compare.yaml names none is the spaces' default, DEFAULT_METRIC (MAP@R):
# random-pair ROC-AUC saturates on these tasks (0.953-0.964 across methods in one quick
# comparison where MAP@R spanned 0.384-0.447) and is reported beside it.


def retraining_seeds(count: int, tuning_seeds: Sequence[int]) -> tuple[int, ...]:
    """The ``count`` smallest non-negative seeds that no tuning trial trained with.

    A re-training with a tuning trial's seed, config and split would reproduce that trial bit
    for bit: the very run the config was selected on would be reported as a test of it.
    """
    used = set(tuning_seeds)
    seeds: list[int] = []
    candidate = 0
    while len(seeds) < count:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return tuple(seeds)


@dataclass(frozen=True)
class CompareSpec:
    """A validated comparison: base config, methods with their spaces, budget, seeds, splits."""

    base: Config
    spaces: dict[str, SearchSpace]
    baselines: tuple[str, ...]
    trials: int
    searcher: str
    seeds: int
    metric: str
    overrides: tuple[str, ...] = ()
    splits: int = 1
    #: The methods tuned by population-based training, with their perturbation intervals.
    populations: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.spaces)

    @property
    def schedulers(self) -> list[str]:
        return [name for name in self.spaces if name not in self.baselines]

    @property
    def mode(self) -> str:
        return best_mode(self.metric)

    @property
    def primary(self) -> str:
        """The test metric the table's corrected tests are about, e.g. ``map_at_r``."""
        return self.metric.removeprefix(VALIDATION_PREFIX)

    @property
    def split_seeds(self) -> tuple[int, ...]:
        """The class splits the protocol runs on: ``split_seed`` and the next ``splits − 1``."""
        first = self.base.dataset.split_seed
        return tuple(range(first, first + self.splits))

    @property
    def tuning_seeds(self) -> tuple[int, ...]:
        """The training seeds of every tuning trial (a space cannot search ``seed``)."""
        return (self.base.seed,)

    @property
    def final_seeds(self) -> tuple[int, ...]:
        """The re-training seeds of every split, disjoint from :attr:`tuning_seeds`."""
        return retraining_seeds(self.seeds, self.tuning_seeds)


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "set": ["train.epochs=8", "dataset.samples_per_class=30"],
        "budget": {"trials": 4, "epochs": 8},
        "searcher": "tpe",
        "seeds": 3,
        "splits": 1,
    },
    "paper": {
        "budget": {"trials": 50, "epochs": 30},
        "searcher": "tpe",
        "seeds": 10,
        "splits": 3,
    },
}


def load_compare_spec(path: Path | None, preset: str | None, overrides: list[str]) -> CompareSpec:
    """Read ``compare.yaml`` (or a preset, or both: the file wins) and validate everything."""
    data: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(
                "--preset", f"unknown value {preset!r}; allowed: {', '.join(PRESETS)}"
            )
        data.update(PRESETS[preset])
    if path is not None:
        loaded = read_yaml(path, field_name="--config")
        if not isinstance(loaded, Mapping):
            raise ConfigError("--config", f"{path} must hold a mapping")
        data.update(loaded)
    return parse_compare_spec(data, overrides, relative_to=path.parent if path else Path.cwd())


def parse_compare_spec(
    data: Mapping[str, Any], cli_overrides: list[str], *, relative_to: Path
) -> CompareSpec:
    allowed = {
        "base",
        "set",
        "methods",
        "baselines",
        "metric",
        "budget",
        "searcher",
        "seeds",
        "split_seed",
        "splits",
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"compare.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}"
        )
    base_path = data.get("base")
    if base_path is not None and not isinstance(base_path, str):
        raise ConfigError("compare.base", f"must be a path or null, got {base_path!r}")
    overrides = _string_list(data.get("set", []), "compare.set")
    budget = data.get("budget", {})
    if not isinstance(budget, Mapping) or set(budget) - {"trials", "epochs"}:
        raise ConfigError("compare.budget", "must be a mapping with keys trials and epochs")
    trials = _positive_int(budget.get("trials", 16), "compare.budget.trials")
    if "epochs" in budget:
        overrides.append(f"train.epochs={_positive_int(budget['epochs'], 'compare.budget.epochs')}")
    if "split_seed" in data:
        overrides.append(f"dataset.split_seed={_int(data['split_seed'], 'compare.split_seed')}")
    overrides += cli_overrides
    resolved_base = (relative_to / base_path) if base_path else None
    base = load_config(resolved_base, overrides)
    methods = data.get("methods", DEFAULT_METHODS)
    if not isinstance(methods, Mapping) or len(methods) < 2:
        raise ConfigError("compare.methods", "must map at least two method names to spaces")
    spaces: dict[str, SearchSpace] = {}
    populations: dict[str, int] = {}
    for name, method_spec in methods.items():
        check_file_name(str(name), f"compare.methods.{str(name)[:64]}")
        space_spec, interval = _method_entry(str(name), method_spec)
        try:
            spaces[str(name)] = load_space(_space_source(space_spec, relative_to), base)
        except ConfigError as error:
            # The space was named here, not with --space: report it under this method's key.
            detail = str(error).removeprefix("--space: ")
            raise ConfigError(f"compare.methods.{name}", detail) from None
        if interval is not None:
            _check_population(str(name), spaces[str(name)], interval, base.train.epochs)
            populations[str(name)] = interval
    metric = data.get("metric", DEFAULT_METRIC)
    if metric not in TUNABLE_METRICS:
        raise ConfigError(
            "compare.metric",
            f"unknown metric {metric!r}; allowed: {', '.join(TUNABLE_METRICS)}",
        )
    mode = best_mode(metric)
    for name, space in spaces.items():
        if space.metric != metric or space.mode != mode:
            raise ConfigError(
                f"compare.methods.{name}",
                f"its space optimises {space.metric} ({space.mode}), but the comparison's "
                f"primary metric is {metric} ({mode}): every method must be tuned on it; set "
                "compare.metric or use a space with that metric",
            )
    baselines_given = data.get("baselines")
    if baselines_given is None:
        baselines = tuple(
            name
            for name, space in spaces.items()
            if space.fixed.get("margin.scheduler") in BASELINE_SCHEDULERS
        )
    else:
        baselines = tuple(_string_list(baselines_given, "compare.baselines"))
        missing = [name for name in baselines if name not in spaces]
        if missing:
            raise ConfigError(
                "compare.baselines",
                f"{missing[0]!r} is not a method; methods: {', '.join(spaces)}",
            )
    seeds = _positive_int(data.get("seeds", 10), "compare.seeds")
    if seeds > MAX_SEEDS:
        raise ConfigError("compare.seeds", f"must be <= {MAX_SEEDS}, got {seeds}")
    splits = _positive_int(data.get("splits", 1), "compare.splits")
    if splits > MAX_SPLITS:
        raise ConfigError("compare.splits", f"must be <= {MAX_SPLITS}, got {splits}")
    if base.dataset.split_seed + splits - 1 > MAX_SEED:
        raise ConfigError(
            "compare.splits",
            f"split seeds {base.dataset.split_seed}..{base.dataset.split_seed + splits - 1} "
            f"pass the largest seed {MAX_SEED}",
        )
    searcher = data.get("searcher", "tpe")
    from margin_tune.pipeline.search.searchers import (
        SEARCHERS,
    )  # imports Ray: only when a spec is validated

    if not isinstance(searcher, str) or searcher not in SEARCHERS:
        raise ConfigError(
            "compare.searcher",
            f"unknown value {searcher!r}; allowed: {', '.join(SEARCHERS.names())}",
        )
    return CompareSpec(
        base=base,
        spaces=spaces,
        baselines=baselines,
        trials=trials,
        searcher=searcher,
        seeds=seeds,
        metric=metric,
        overrides=tuple(overrides),
        splits=splits,
        populations=populations,
    )


#: What a method's mapping in ``compare.methods`` may hold.
METHOD_KEYS = ("space", "population")
#: The epochs between a population's exploit-and-perturb steps when ``population`` names none.
DEFAULT_PERTURBATION_INTERVAL = 2


def _method_entry(name: str, entry: Any) -> tuple[str, int | None]:
    """A method's space and, for one tuned by population-based training, its perturbation
    interval: ``dams`` or ``{space: dams, population: {perturbation_interval: 3}}``."""
    field = f"compare.methods.{name}"
    if isinstance(entry, str):
        return entry, None
    if not isinstance(entry, Mapping) or not isinstance(entry.get("space"), str):
        raise ConfigError(
            field,
            f"must name a search space, or be a mapping with keys {', '.join(METHOD_KEYS)} "
            f"(space: a search space), got {entry!r}",
        )
    unknown = sorted(set(entry) - set(METHOD_KEYS))
    if unknown:
        raise ConfigError(
            f"{field}.{unknown[0]}", f"unknown key; allowed: {', '.join(METHOD_KEYS)}"
        )
    if "population" not in entry:
        return entry["space"], None
    population = entry["population"]
    if population is None:
        population = {}
    if not isinstance(population, Mapping) or set(population) - {"perturbation_interval"}:
        raise ConfigError(
            f"{field}.population",
            f"must be a mapping with the key perturbation_interval (or empty), got {population!r}",
        )
    interval = _int(
        population.get("perturbation_interval", DEFAULT_PERTURBATION_INTERVAL),
        f"{field}.population.perturbation_interval",
    )
    return entry["space"], interval


def _check_population(name: str, space: SearchSpace, interval: int, epochs: int) -> None:
    """The interval must fall within the epochs, and the space must search what
    population-based training perturbs; checked as ``tune --population`` checks them."""
    from margin_tune.pipeline.sweep.population import (  # imports Ray
        check_perturbation_interval,
        perturbed,
    )

    field = f"compare.methods.{name}.population"
    check_perturbation_interval(interval, epochs, f"{field}.perturbation_interval")
    try:
        perturbed(space)
    except ConfigError as error:
        detail = str(error).removeprefix("--population: ")
        raise ConfigError(field, detail) from None


def _space_source(spec: str, relative_to: Path) -> str | Path:
    """A space file beside compare.yaml first, then a working-directory file or a packaged name.

    A missing file is reported at the path beside compare.yaml, and a directory that happens to
    share a packaged space's name does not shadow it.
    """
    candidate = relative_to / spec
    if candidate.is_file() or not (Path(spec).is_file() or spec in packaged_spaces()):
        return candidate
    return spec


def _string_list(value: Any, field_name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(field_name, f"must be a list of strings, got {value!r}")
    return list(value)


def _int(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"must be an integer, got {value!r}")
    return value


def _positive_int(value: Any, field_name: str) -> int:
    number = _int(value, field_name)
    if number < 1:
        raise ConfigError(field_name, f"must be >= 1, got {number}")
    return number


#: Where a comparison's output directory keeps each method's space, as ``<method>.yaml``.
SPACES_DIR = "spaces"


def spec_data(spec: CompareSpec) -> dict[str, Any]:
    """The comparison as JSON data (a manifest's ``spec``); the spaces are copied beside it."""
    return {
        "base": spec.base.to_dict(),
        "methods": {method: space.name for method, space in spec.spaces.items()},
        "baselines": list(spec.baselines),
        "trials": spec.trials,
        "searcher": spec.searcher,
        "seeds": spec.seeds,
        "metric": spec.metric,
        "overrides": list(spec.overrides),
        "splits": spec.splits,
        "populations": dict(spec.populations),
    }


def spec_from_data(data: dict[str, Any], spaces: Path) -> CompareSpec:
    """The comparison :func:`spec_data` wrote, its spaces read from their copies in ``spaces``."""
    base = config_from_dict(data["base"])
    return CompareSpec(
        base=base,
        spaces={
            method: dataclasses.replace(load_space(spaces / f"{method}.yaml", base), name=name)
            for method, name in data["methods"].items()
        },
        baselines=tuple(data["baselines"]),
        trials=data["trials"],
        searcher=data["searcher"],
        seeds=data["seeds"],
        metric=data["metric"],
        overrides=tuple(data["overrides"]),
        splits=data["splits"],
        populations=dict(data.get("populations", {})),
    )
