"""Search spaces: YAML data → validated parameters → Optuna suggestions.

A space file names config paths, a distribution for each, the metric and its mode::

    metric: val_map_at_r
    mode: max
    parameters:
      margin.target_easy_ratio: {distribution: uniform, low: 0.7, high: 0.99}
      train.lr: {distribution: log_uniform, low: 1.0e-4, high: 1.0e-2}
      miner.name: {distribution: categorical, choices: [all, semihard]}
      sampler.classes_per_batch: {distribution: int, low: 8, high: 32, step: 8}
      margin.scheduler: {distribution: fixed, value: dams}

Every bound, choice and fixed value is checked against the trial config itself, so a space that
could suggest an invalid trial (``target_easy_ratio`` 1.3) fails when it is loaded.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna

from margin_tune.search_spaces import packaged_spaces
from margin_tune.trainables.config import Config, as_number, config_fields, read_yaml, unflatten
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import (
    MAP_AT_R,
    TUNABLE_METRICS,
    on_validation,
)
from margin_tune.trainables.parts import config_from_dict

Distribution = Literal["uniform", "log_uniform", "int", "categorical", "fixed"]
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "log_uniform", "int", "categorical", "fixed")
_KEYS: dict[str, set[str]] = {
    "uniform": {"low", "high"},
    "log_uniform": {"low", "high"},
    "int": {"low", "high", "step", "log"},
    "categorical": {"choices"},
    "fixed": {"value"},
}
_REQUIRED: dict[str, set[str]] = {
    "uniform": {"low", "high"},
    "log_uniform": {"low", "high"},
    "int": {"low", "high"},
    "categorical": {"choices"},
    "fixed": {"value"},
}
#: Config paths that define the protocol, the same for every method: the data (classes, split,
#: noise), the evaluation, the collapse rule, the seeds and the budget. A space that searched or
#: fixed one would carry its winning value into the re-training, and the methods would be
#: compared on different classes, pairs, seeds or budgets; they belong in the base config.
PROTOCOL_PREFIXES: tuple[str, ...] = ("dataset.", "eval.", "collapse.")
PROTOCOL_KEYS: tuple[str, ...] = (
    "seed",
    "train.epochs",
    "train.batches_per_epoch",
    "train.device",
    "train.num_threads",
)
#: What a space optimises when it names no metric: MAP@R, the Reality Check's primary metric
#: (random-pair ROC-AUC saturates near 0.96 on these tasks, where MAP@R still separates methods).
DEFAULT_METRIC = on_validation(MAP_AT_R)


@dataclass(frozen=True)
class Parameter:
    """One searched (or fixed) config path."""

    path: str
    distribution: Distribution
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    value: Any = None

    @property
    def searched(self) -> bool:
        return self.distribution != "fixed"

    def extremes(self) -> list[Any]:
        """The values that bound what this parameter can produce: each must be a valid config."""
        if self.distribution == "fixed":
            return [self.value]
        if self.distribution == "categorical":
            return list(self.choices)
        return [self.low, self.high]

    def optuna_distribution(self) -> optuna.distributions.BaseDistribution:
        """The same distribution as Optuna names it, to rebuild a study from finished trials."""
        if self.distribution in ("uniform", "log_uniform"):
            return optuna.distributions.FloatDistribution(
                float(self.low or 0), float(self.high or 0), log=self.distribution == "log_uniform"
            )
        if self.distribution == "int":
            return optuna.distributions.IntDistribution(
                int(self.low or 0), int(self.high or 0), step=self.step or 1, log=self.log
            )
        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def suggest(self, trial: Any) -> Any:
        """Draw from an ``optuna.trial.Trial`` (define-by-run)."""
        if self.distribution in ("uniform", "log_uniform"):
            return trial.suggest_float(
                self.path, self.low, self.high, log=self.distribution == "log_uniform"
            )
        if self.distribution == "int":
            return trial.suggest_int(
                self.path,
                int(self.low or 0),
                int(self.high or 0),
                step=self.step or 1,
                log=self.log,
            )
        return trial.suggest_categorical(self.path, list(self.choices))


@dataclass(frozen=True)
class SearchSpace:
    """A validated space: its parameters, the metric to optimise and the direction."""

    name: str
    parameters: tuple[Parameter, ...]
    metric: str
    mode: Literal["max", "min"]
    source: Path | None = None
    description: str = ""

    @property
    def fixed(self) -> dict[str, Any]:
        return {p.path: p.value for p in self.parameters if not p.searched}

    @property
    def searched(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if p.searched)

    def optuna_space(self) -> OptunaDefineByRun:
        return OptunaDefineByRun(self.searched, self.fixed)


class OptunaDefineByRun:
    """The define-by-run function OptunaSearch calls; a class so the searcher state pickles."""

    def __init__(self, parameters: tuple[Parameter, ...], fixed: Mapping[str, Any]) -> None:
        self.parameters = parameters
        self.fixed = dict(fixed)

    def __call__(self, trial: Any) -> dict[str, Any]:
        for parameter in self.parameters:
            parameter.suggest(trial)
        return dict(self.fixed)


def resolve_space_path(spec: str | Path) -> Path:
    """A path, or the name of a packaged space (``dams`` → the shipped ``dams.yaml``)."""
    path = Path(spec)
    if path.is_file() or path.suffix in (".yaml", ".yml"):
        return path
    packaged = packaged_spaces()
    if str(spec) in packaged:
        return packaged[str(spec)]
    raise ConfigError(
        "--space",
        f"{str(spec)!r} is neither a file nor a packaged space; packaged: "
        f"{', '.join(sorted(packaged))}",
    )


def load_space(spec: str | Path, base: Config | None = None) -> SearchSpace:
    """Read and validate a space file; ``base`` is the config the space's values are laid over."""
    path = resolve_space_path(spec)
    data = read_yaml(path, field_name="--space")
    return parse_space(data, base or Config(), name=path.stem, source=path)


def parse_space(data: Any, base: Config, *, name: str, source: Path | None = None) -> SearchSpace:
    if not isinstance(data, Mapping):
        raise ConfigError("space", f"must be a mapping, got {type(data).__name__}")
    allowed = {"metric", "mode", "parameters", "description"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"space.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}"
        )
    metric = data.get("metric", DEFAULT_METRIC)
    if metric not in TUNABLE_METRICS:
        raise ConfigError(
            "space.metric", f"unknown metric {metric!r}; allowed: {', '.join(TUNABLE_METRICS)}"
        )
    mode = data.get("mode", "max")
    if mode not in ("max", "min"):
        raise ConfigError("space.mode", f"unknown value {mode!r}; allowed: max, min")
    raw_parameters = data.get("parameters")
    if not isinstance(raw_parameters, Mapping) or not raw_parameters:
        raise ConfigError("space.parameters", "must be a non-empty mapping of config path → spec")
    parameters = tuple(_parse_parameter(str(path), spec) for path, spec in raw_parameters.items())
    if not any(p.searched for p in parameters):
        raise ConfigError("space.parameters", "at least one parameter must be searched, not fixed")
    for parameter in parameters:
        _check_against_config(parameter, parameters, base)
    return SearchSpace(
        name=name,
        parameters=parameters,
        metric=metric,
        mode=mode,
        source=source,
        description=str(data.get("description", "")),
    )


def apply_overrides(base: Config, values: Mapping[str, Any]) -> Config:
    """The trial config: ``base`` with dotted ``values`` laid over it, validated."""
    return config_from_dict(overlay(base.to_dict(), values))


def overlay(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (a config as plain data) with dotted ``values`` laid over it; ``data`` itself is
    left as it was. What :func:`apply_overrides` validates, for a caller that holds the data."""
    merged = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in data.items()
    }
    for section, content in unflatten(values).items():
        if isinstance(content, dict) and isinstance(merged.get(section), dict):
            merged[section].update(content)
        else:
            merged[section] = content
    return merged


def _parse_parameter(path: str, spec: Any) -> Parameter:
    field = f"space.parameters.{path}"
    known = config_fields()
    if path not in known:
        raise ConfigError(field, f"unknown config path; known: {', '.join(sorted(known))}")
    if path in PROTOCOL_KEYS or path.startswith(PROTOCOL_PREFIXES):
        raise ConfigError(
            field,
            f"{path} defines the data, evaluation, seeds or budget of the protocol, which is the "
            "same for every method; a space may neither search nor fix it. Set it in the base "
            f"config or with --set {path}=... instead",
        )
    if not isinstance(spec, Mapping):
        raise ConfigError(field, "must be a mapping with a 'distribution' key")
    distribution = spec.get("distribution")
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(
            f"{field}.distribution",
            f"unknown distribution {distribution!r}; allowed: {', '.join(DISTRIBUTIONS)}",
        )
    if distribution in ("uniform", "log_uniform") and _is_integer(known[path]):
        raise ConfigError(
            f"{field}.distribution",
            f"{path} is an integer but {distribution} draws floats; use distribution: int "
            "(with log: true for a log scale)",
        )
    extra = sorted(set(spec) - _KEYS[distribution] - {"distribution"})
    if extra:
        allowed = ", ".join(sorted(_KEYS[distribution]))
        raise ConfigError(f"{field}.{extra[0]}", f"not a key of {distribution}; allowed: {allowed}")
    missing = sorted(_REQUIRED[distribution] - set(spec))
    if missing:
        raise ConfigError(f"{field}.{missing[0]}", f"required for distribution {distribution}")
    if distribution == "fixed":
        return Parameter(path, "fixed", value=spec["value"])
    if distribution == "categorical":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{field}.choices", "must be a non-empty list")
        return Parameter(path, "categorical", choices=tuple(choices))
    bounds: dict[str, float] = {}
    for key in ("low", "high"):
        number = as_number(spec[key])
        if number is None:
            raise ConfigError(f"{field}.{key}", f"must be a number, got {spec[key]!r}")
        bounds[key] = number
    low, high = bounds["low"], bounds["high"]
    if not low < high:
        raise ConfigError(f"{field}.high", f"empty range: low {low} must be < high {high}")
    log_given = spec.get("log", False)
    if not isinstance(log_given, bool):
        raise ConfigError(f"{field}.log", f"must be true or false, got {log_given!r}")
    log = distribution == "log_uniform" or log_given
    if log and low <= 0:
        raise ConfigError(f"{field}.low", f"a log range needs low > 0, got {low}")
    if distribution == "int":
        step = spec.get("step", 1)
        raw = (spec["low"], spec["high"], step)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise ConfigError(field, "int distribution needs integer low, high and step")
        if step < 1 or (log and step != 1):
            raise ConfigError(f"{field}.step", f"must be >= 1 (and 1 with log), got {step}")
        return Parameter(path, "int", low=spec["low"], high=spec["high"], step=step, log=log)
    return Parameter(path, distribution, low=low, high=high)


def _is_integer(hint: Any) -> bool:
    """Whether a config field's annotation is ``int`` (or ``int | None``)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return [arg for arg in typing.get_args(hint) if arg is not type(None)] == [int]
    return hint is int


def _check_against_config(
    parameter: Parameter, parameters: tuple[Parameter, ...], base: Config
) -> None:
    """Each extreme value, with the other parameters at their first value, is a valid config."""
    context = {p.path: p.extremes()[0] for p in parameters if p is not parameter}
    for value in parameter.extremes():
        try:
            apply_overrides(base, {**context, parameter.path: value})
        except ConfigError as error:
            raise ConfigError(
                f"space.parameters.{parameter.path}",
                f"value {value!r} gives an invalid trial: {error}",
            ) from None
