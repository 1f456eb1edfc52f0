"""``tune --warm-start``: an earlier sweep's finished trials as a new study's first observations.

A researcher who tuned a scheduler on one dataset and moves to the next should not pay TPE's
random start-up again. The earlier sweep's trials go into the new Optuna study through
``Study.add_trials``: finished trials with their values, run by nobody, so they cost none of
the ``--trials`` budget (``enqueue_trial`` would run each again and spend it). What may be used
is decided here, before anything starts:

- only trials that trained the earlier sweep's whole epoch budget (status ``completed``): an
  early-stopped value was measured at fewer epochs and is not the sweep's result;
- only an earlier sweep that optimised the same metric: its values must be comparable;
- only the parameters both spaces search, each value inside the new space's range. The others
  are named: searched there but not here (dropped), searched here but not there (which TPE
  learns from the new trials alone), and trials with a value outside the new range (skipped).

The earlier sweep is found by its MLflow sweep id (a ``tune`` sweep or one of a comparison's)
in the new sweep's store and experiment, or by a ``tune`` output directory. Both hold the
sweep's ``trials.csv`` (its trials' searched values, status and last metrics) and its space
file, which says which parameters it searched.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from margin_tune.pipeline.outputs.folders import SPACE_COPY
from margin_tune.pipeline.outputs.manifest import read_manifest
from margin_tune.pipeline.search.searchers import LEARNING_SEARCHERS, startup_trials
from margin_tune.pipeline.search.space import DEFAULT_METRIC, SearchSpace
from margin_tune.pipeline.search.study import SEED_MODES, SeedTrial
from margin_tune.pipeline.tracking.reader import (
    ExperimentRuns,
    listed,
    open_client,
    quiet_downloads,
    run_kind,
    sweep_id_of,
)
from margin_tune.pipeline.tracking.vocabulary import (
    DATASET_FINGERPRINT_TAG,
    SWEEP_KIND,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.config import read_yaml
from margin_tune.trainables.errors import ConfigError

FIELD = "--warm-start"
#: The trials table every finished sweep writes, in its directory and among its run's artifacts.
TRIALS_FILE = "trials.csv"
#: Where a sweep run keeps its space file among its artifacts.
SPACE_ARTIFACTS = "space"


@dataclass(frozen=True)
class EarlierSweep:
    """What the earlier sweep left: its trials, the metric it optimised, the parameters it
    searched (path → the space file's entry) and the ones it fixed."""

    label: str
    trials: pd.DataFrame
    metric: str
    searched: tuple[str, ...]
    fixed: Mapping[str, Any]
    #: The fingerprint of the data it ran on, where it recorded one.
    fingerprint: str | None = None


@dataclass(frozen=True)
class WarmStart:
    """The trials a new study is seeded with, and what was left out of them, and why."""

    source: str
    metric: str
    seeded: tuple[SeedTrial, ...]
    shared: tuple[str, ...]
    #: Searched by the earlier sweep, not by this one.
    dropped: tuple[str, ...]
    #: Searched by this sweep, not by the earlier one: TPE learns them from new trials alone.
    unseeded: tuple[str, ...]
    #: Earlier trials that did not complete their budget (early-stopped, collapsed, failed).
    not_completed: int
    #: Completed earlier trials with a shared value outside this space's range.
    outside: tuple[str, ...]
    #: ``path: earlier → here`` for values both sweeps fix, differently.
    differing_fixed: tuple[str, ...] = ()
    #: One of :data:`SEED_MODES`: added as finished, or enqueued to run first.
    mode: str = "add"
    #: The fingerprint of the data the earlier sweep ran on, where it recorded one.
    source_fingerprint: str | None = None

    def lines(self, fingerprint: str | None = None) -> list[str]:
        """What ``tune`` prints and logs before it starts; ``fingerprint`` is this sweep's
        data's, to say when added values come from other data."""
        how = (
            "added as finished, not run, not counted in --trials"
            if self.mode == "add"
            else "its best configs, enqueued to run first here, counted in --trials"
        )
        text = [
            f"warm start from {self.source}: {len(self.seeded)} completed trials seed the "
            f"study ({how}), on {', '.join(self.shared)}",
        ]
        if self.dropped:
            text.append(f"  dropped (searched there, not here): {', '.join(self.dropped)}")
        if self.unseeded:
            text.append(f"  not seeded (searched here, not there): {', '.join(self.unseeded)}")
        if self.not_completed:
            text.append(f"  left out: {self.not_completed} trials short of their budget")
        if self.outside:
            text.append(
                f"  left out: {len(self.outside)} trials with a value outside this space "
                f"({listed(self.outside)})"
            )
        if self.differing_fixed:
            text.append(f"  fixed differently: {', '.join(self.differing_fixed)}")
        known = None not in (self.source_fingerprint, fingerprint)
        if self.mode == "add" and known and self.source_fingerprint != fingerprint:
            text.append(
                "  note: the earlier sweep ran on other data; TPE takes its values as if "
                "measured on this data, and where they are higher they hold its good group "
                "until a new trial beats them (--warm-start-mode enqueue measures the best "
                "few here instead)"
            )
        return text

    def to_data(self) -> dict[str, Any]:
        """As plain JSON, for the output directory's manifest: a resumed sweep seeds the same."""
        return {
            "source": self.source,
            "metric": self.metric,
            "seeded": [
                {"source": seed.source, "params": dict(seed.params), "value": seed.value}
                for seed in self.seeded
            ],
            "shared": list(self.shared),
            "dropped": list(self.dropped),
            "unseeded": list(self.unseeded),
            "not_completed": self.not_completed,
            "outside": list(self.outside),
            "differing_fixed": list(self.differing_fixed),
            "mode": self.mode,
            "source_fingerprint": self.source_fingerprint,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], space: SearchSpace) -> WarmStart:
        distributions = _distributions(space)
        seeded = tuple(
            SeedTrial(
                str(seed["source"]),
                dict(seed["params"]),
                {name: distributions[name] for name in seed["params"]},
                float(seed["value"]),
            )
            for seed in data["seeded"]
        )
        return cls(
            str(data["source"]),
            str(data["metric"]),
            seeded,
            tuple(data["shared"]),
            tuple(data["dropped"]),
            tuple(data["unseeded"]),
            int(data["not_completed"]),
            tuple(data["outside"]),
            tuple(data.get("differing_fixed", ())),
            str(data.get("mode", "add")),
            data.get("source_fingerprint"),
        )


def load_warm_start(
    key: str,
    space: SearchSpace,
    searcher: str,
    *,
    experiment: str,
    tracking_uri: str | None,
    mode: str = "add",
    trials: int = 1,
) -> WarmStart:
    """The seed trials for a new sweep of ``space`` (of ``trials`` trials) from the sweep
    ``key`` names: every usable one to ``add``; to ``enqueue``, the best of them, as many as
    TPE would draw at random before it models (:func:`startup_trials`), which they replace.

    Raises:
        ConfigError: naming ``--warm-start``: no such sweep or directory, one that has not
            finished, another metric, no parameter in common, no usable trial; or naming
            ``--searcher`` when it does not learn from finished trials.
    """
    if mode not in SEED_MODES:
        raise ConfigError(
            "--warm-start-mode", f"unknown value {mode!r}; allowed: {', '.join(SEED_MODES)}"
        )
    if searcher not in LEARNING_SEARCHERS:
        raise ConfigError(
            "--searcher",
            f"{searcher} does not learn from earlier trials, so --warm-start would change "
            f"nothing; allowed with --warm-start: {', '.join(LEARNING_SEARCHERS)}",
        )
    earlier = (
        _from_directory(Path(key)) if _is_path(key) else _from_store(key, experiment, tracking_uri)
    )
    warm = seed_trials(earlier, space)
    if mode == "add":
        return warm
    best_first = sorted(warm.seeded, key=lambda seed: seed.value, reverse=space.mode == "max")
    return replace(warm, seeded=tuple(best_first[: startup_trials(trials)]), mode=mode)


def seed_trials(earlier: EarlierSweep, space: SearchSpace) -> WarmStart:
    """Choose and convert the earlier sweep's trials for ``space`` (see the module); all of
    them, to be added."""
    if earlier.metric != space.metric:
        raise ConfigError(
            FIELD,
            f"{earlier.label} optimised {earlier.metric}, this sweep {space.metric}: its values "
            "are not comparable; warm-start from a sweep of the same metric",
        )
    here = [parameter.path for parameter in space.searched]
    shared = tuple(path for path in here if path in earlier.searched)
    if not shared:
        raise ConfigError(
            FIELD,
            f"{earlier.label} searched {', '.join(earlier.searched) or 'nothing'}; this space "
            f"searches {', '.join(here)}: no parameter in common",
        )
    trials = earlier.trials
    status = trials["status"] if "status" in trials else pd.Series("", index=trials.index)
    completed = trials[(status == "completed") & trials.get(space.metric, pd.Series()).notna()]
    distributions = _distributions(space)
    seeded, outside = [], []
    for _, row in completed.iterrows():
        trial_id = str(row.get(TRIAL_ID_TAG, row.name))
        params = {}
        for path in shared:
            value = _inside(row.get(f"config.{path}"), distributions[path])
            if value is None:
                break
            params[path] = value
        else:
            seeded.append(
                SeedTrial(
                    f"{earlier.label}: trial {trial_id}",
                    params,
                    {path: distributions[path] for path in shared},
                    float(row[space.metric]),
                )
            )
            continue
        outside.append(trial_id)
    if not seeded:
        reason = (
            f"all {len(outside)} completed trials have a value outside this space"
            if outside
            else f"none of its {len(trials)} trials completed its epoch budget"
        )
        raise ConfigError(FIELD, f"{earlier.label}: nothing to seed with: {reason}")
    fixed_here = space.fixed
    differing = tuple(
        f"{path}: {earlier.fixed[path]} → {value}"
        for path, value in fixed_here.items()
        if path in earlier.fixed and str(earlier.fixed[path]) != str(value)
    )
    return WarmStart(
        source=earlier.label,
        metric=earlier.metric,
        seeded=tuple(seeded),
        shared=shared,
        dropped=tuple(path for path in earlier.searched if path not in here),
        unseeded=tuple(path for path in here if path not in earlier.searched),
        not_completed=len(trials) - len(completed),
        outside=tuple(outside),
        differing_fixed=differing,
        source_fingerprint=earlier.fingerprint,
    )


def _is_path(key: str) -> bool:
    path = Path(key)
    return path.exists() or "/" in key or key.startswith(".")


def _from_directory(directory: Path) -> EarlierSweep:
    if not directory.is_dir():
        raise ConfigError(FIELD, f"{directory} is not a directory (nor a sweep id)")
    try:
        manifest = read_manifest(directory, ("tune",))
    except ConfigError as error:
        raise ConfigError(
            FIELD,
            f"{directory} is not an output directory of margin-tune tune ({error}); a "
            "comparison's sweep is named by its sweep id",
        ) from None
    trials = directory / TRIALS_FILE
    if not trials.is_file():
        raise ConfigError(
            FIELD, f"{directory} has no {TRIALS_FILE}: the sweep has not finished; resume it first"
        )
    metric, searched, fixed = _space_file(directory / SPACE_COPY)
    return EarlierSweep(
        f"sweep {manifest['sweep_id']} ({directory})",
        _read_trials(trials),
        metric,
        searched,
        fixed,
        manifest.get("dataset_fingerprint"),
    )


def _from_store(key: str, experiment: str, tracking_uri: str | None) -> EarlierSweep:
    try:
        runs = ExperimentRuns(open_client(tracking_uri), experiment)
    except ConfigError as error:
        raise ConfigError(
            FIELD, f"{key!r} is not a directory, and its MLflow store is unreadable: {error}"
        ) from None
    sweep = runs.find(key, field=FIELD)
    if run_kind(sweep) != SWEEP_KIND:
        raise ConfigError(
            FIELD,
            f"{key!r} is a {run_kind(sweep) or 'run'} ({sweep.info.run_name}); name one of its "
            "sweeps",
        )
    label = f"sweep {sweep_id_of(sweep)} ({sweep.info.run_name})"
    client, run_id = runs.client, sweep.info.run_id
    names = {item.path for item in client.list_artifacts(run_id)}
    spaces = [item.path for item in client.list_artifacts(run_id, SPACE_ARTIFACTS)]
    if TRIALS_FILE not in names:
        raise ConfigError(
            FIELD,
            f"{label} ({sweep.info.status}) has no {TRIALS_FILE} among its artifacts: it has "
            "not finished; resume it first",
        )
    if len(spaces) != 1:
        raise ConfigError(FIELD, f"{label} has no space file among its artifacts")
    with quiet_downloads(), tempfile.TemporaryDirectory(prefix="margin-tune-") as scratch:
        trials = _read_trials(Path(client.download_artifacts(run_id, TRIALS_FILE, scratch)))
        metric, searched, fixed = _space_file(
            Path(client.download_artifacts(run_id, spaces[0], scratch))
        )
    logged = sweep.data.params.get("metric")
    fingerprint = sweep.data.tags.get(DATASET_FINGERPRINT_TAG)
    return EarlierSweep(label, trials, logged or metric, searched, fixed, fingerprint)


def _read_trials(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise ConfigError(FIELD, f"cannot read {path}: {error}") from None


def _space_file(path: Path) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The metric, searched paths and fixed values a space file declares, read as it was
    written (not validated against today's config: the earlier sweep ran it)."""
    data = read_yaml(path, field_name=FIELD)
    parameters = data.get("parameters", {}) if isinstance(data, dict) else {}
    if not isinstance(parameters, dict):
        raise ConfigError(FIELD, f"{path}: parameters must be a mapping")
    searched = tuple(
        path
        for path, entry in parameters.items()
        if not (isinstance(entry, dict) and entry.get("distribution") == "fixed")
    )
    fixed = {
        path: entry.get("value")
        for path, entry in parameters.items()
        if isinstance(entry, dict) and entry.get("distribution") == "fixed"
    }
    return str(data.get("metric", DEFAULT_METRIC)), searched, fixed


def _distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    return {parameter.path: parameter.optuna_distribution() for parameter in space.searched}


def _inside(value: Any, distribution: optuna.distributions.BaseDistribution) -> Any:
    """``value`` (as ``trials.csv`` holds it) as the distribution's type, or None when it is
    missing or outside the distribution."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            typed = _choice(value, distribution.choices)
        elif isinstance(distribution, optuna.distributions.IntDistribution):
            number = float(value)
            if number != int(number):
                return None
            typed = int(number)
        else:
            typed = float(value)
        internal = distribution.to_internal_repr(typed)
    except (TypeError, ValueError):
        return None
    return typed if distribution._contains(internal) else None


def _choice(value: Any, choices: Sequence[Any]) -> Any:
    for choice in choices:
        if choice == value or str(choice) == str(value):
            return choice
    raise ValueError(f"{value!r} is not among {choices!r}")
