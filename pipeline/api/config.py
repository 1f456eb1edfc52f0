"""What the API's functions accept for a config and for sweep options, as checked objects."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from margin_tune.pipeline.search.study import is_database_url
from margin_tune.pipeline.sweep.plan import SweepOptions
from margin_tune.pipeline.tracking.store import resolve_tracking_uri
from margin_tune.trainables.config import Config, parse_override, read_config_data, set_dotted
from margin_tune.trainables.parts import config_from_dict

#: A trial config as the API takes it: a :class:`Config`, a mapping laid out like the YAML file
#: (any subset of its keys; the rest are the defaults, as in a ``--config`` file), a YAML path,
#: or None for the packaged default.
ConfigLike = Config | Mapping[str, Any] | str | Path | None
#: Dotted overrides: ``{"train.epochs": 3}``, or ``--set`` strings (``["train.epochs=3"]``).
Overrides = Mapping[str, Any] | Iterable[str]


def resolve_config(config: ConfigLike = None, overrides: Overrides = ()) -> Config:
    """The checked config ``config`` and ``overrides`` describe.

    Raises:
        ConfigError: naming the field and what is allowed, as the CLI reports it.
    """
    if isinstance(config, Config):
        data = config.to_dict()
    elif isinstance(config, Mapping):
        data = copy.deepcopy(dict(config))
    else:
        data = read_config_data(config)
    pairs = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for key, value in pairs:
        set_dotted(data, key, value)
    return config_from_dict(data)


#: The Optuna study of a sweep on this machine, in its output directory, unless ``storage`` says
#: otherwise: what ``margin-tune ui --sweep-dir DIR`` shows in optuna-dashboard. An Optuna
#: journal file (``JournalStorage``): ask, report and tell cost the driver about 2 ms a trial
#: there against 20 ms in a SQLite RDB, where every call is an ORM transaction (P6).
OPTUNA_JOURNAL = "optuna-journal.log"


def with_default_storage(options: SweepOptions, out: Path) -> SweepOptions:
    """``options`` with the study in ``out``/:data:`OPTUNA_JOURNAL` when no ``storage`` was
    given.

    Only for a local Ray: a cluster's ``--out`` is shared or object storage, where file locks
    cannot be trusted, so there the study stays in memory unless ``storage`` names one (the
    driver alone writes it, so a file on a local disk is safe).
    """
    if options.storage is not None or options.address is not None:
        return options
    return dataclasses.replace(options, storage=str((out / OPTUNA_JOURNAL).resolve()))


def sweep_options(trials: int, options: Mapping[str, Any]) -> SweepOptions:
    """:class:`SweepOptions` from keyword arguments, with the store's URI and a study's journal
    path made absolute (a resume, from another directory, must log to the same store)."""
    known = {field.name for field in dataclasses.fields(SweepOptions)} - {"trials"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
    built = SweepOptions(trials=trials, **options)
    storage = built.storage
    if storage and not is_database_url(storage):
        storage = str(Path(storage).resolve())
    return dataclasses.replace(
        built, tracking_uri=resolve_tracking_uri(built.tracking_uri), storage=storage
    )
