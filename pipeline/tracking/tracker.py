"""The one place that talks to MLflow: sweep and trial runs, written off the training loop.

Layout in the store: an experiment holds sweeps; each sweep is a parent run, each trial a child
run nested under it with the tag ``mlflow.parentRunId`` (a comparison adds one more level above
the sweeps). Only :class:`mlflow.MlflowClient` is used, never the fluent ``mlflow.start_run``
state, so several trackers can live in one process.

Why a background writer: one ``log_batch`` on SQLite costs about 10 ms and an HTTP store can be
down for minutes, while the training loop must never wait. Callers only append to a queue; one
thread drains it, merges what is pending per run into ``log_batch`` calls within MLflow's
limits, and keeps retrying with capped exponential backoff while the store is unreachable, so
nothing recorded is lost while the process lives. Retrying is safe because every value carries
the timestamp taken when it was logged, and MLflow ignores a metric it already holds with the
same key, step, timestamp and value.

Why idempotence: a resumed sweep calls :meth:`Tracker.sweep_run` and :meth:`Tracker.child_run`
again with the same ids and gets the existing runs back, and :meth:`Tracker.log_epoch` drops
epochs the store already holds, so a restart after a crash never duplicates a run or a step.
Opening a run is itself a search for the run's tag followed, only if nothing is found, by a
create: a create whose answer was lost in an outage is found, not repeated, on the retry.

Why a trial's run may be opened later: :meth:`Tracker.child_run` is called from Ray Tune's event
loop when a trial starts. If the store does not answer within ``open_timeout`` it returns a
provisional id and the writer opens the run when the store is back; everything logged
under the provisional id meanwhile is written to the real run, so a store outage neither stops
a sweep nor stalls Tune.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import (
    MAX_BATCH_LOG_REQUEST_SIZE,
    MAX_ENTITIES_PER_BATCH,
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
    _validate_metric_name,
    _validate_param_name,
    _validate_tag_name,
)

from margin_tune.pipeline.runtime.secrets import redact_uri
from margin_tune.pipeline.tracking.vocabulary import (
    ERROR_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    TRIAL_ID_TAG,
    tag_value,
)
from margin_tune.trainables.errors import ConfigError

DEFAULT_EXPERIMENT = "margin-tune"
MAX_ERROR_CHARS = 5000

RunEndStatus = Literal["FINISHED", "FAILED", "KILLED"]
_END_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})

# MLflow's HTTP client retries a refused connection 7 times with doubling backoff (minutes) by
# default; our own writer retries forever, so a single attempt with a short timeout is wanted.
_HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # MLflow prints "View run … at: <tracking URI>" for every ended run of a server store:
    # hundreds of lines per sweep, and the URI's credentials with them.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# Error codes that mean the request itself is wrong: retrying cannot help.
_PERMANENT_ERROR_CODES = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "BAD_REQUEST",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_STATE",
    }
)
_TRUNCATED = "...[truncated]"
#: Prefix of the id :meth:`Tracker.child_run` hands out while the store is down; MLflow's run
#: ids are hexadecimal, so the two never collide.
_PROVISIONAL = "pending-"
# The REST handler rejects a log-batch body over MAX_BATCH_LOG_REQUEST_SIZE bytes of JSON.
_REQUEST_BUDGET = int(MAX_BATCH_LOG_REQUEST_SIZE * 0.9)
_ENTITY_JSON_OVERHEAD = 96
_BATCH_LIMITS = {
    Metric: MAX_METRICS_PER_BATCH,
    Param: MAX_PARAMS_TAGS_PER_BATCH,
    RunTag: MAX_PARAMS_TAGS_PER_BATCH,
}
_BATCH_FIELDS = {Metric: "metrics", Param: "params", RunTag: "tags"}
_NAME_VALIDATORS: dict[str, Callable[[str], None]] = {
    "metric": _validate_metric_name,
    "param": _validate_param_name,
    "tag": _validate_tag_name,
}

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")


def flatten_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Flattens a nested config into MLflow params with dotted keys.

    MLflow params are flat strings, and the UI compares runs by key, so ``{"loss": {"margin":
    0.2}}`` becomes ``{"loss.margin": "0.2"}``. Values are written as JSON (``None`` → ``null``,
    lists as JSON arrays) so that they read back unambiguously; an empty mapping stays visible
    as ``{}``.
    """
    flat: dict[str, str] = {}
    _flatten_into(flat, "", config)
    return flat


def _flatten_into(flat: dict[str, str], prefix: str, config: Mapping[str, Any]) -> None:
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            _flatten_into(flat, f"{name}.", value)
        else:
            flat[name] = _to_text(value)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return json.dumps(dict(value), default=str)
    if value is None or isinstance(value, bool | int | float | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _clip(value: str, limit: int) -> str:
    """Cuts a value to MLflow's length limit, marking the cut so nobody mistakes it for whole."""
    if len(value) <= limit:
        return value
    _logger.warning("value of %d characters cut to MLflow's limit of %d", len(value), limit)
    return value[: limit - len(_TRUNCATED)] + _TRUNCATED


def _error_text(error: str | BaseException) -> str:
    """Keeps the end of the error, where a traceback names the exception that ended the run."""
    if isinstance(error, BaseException):
        error = "".join(traceback.format_exception(error))
    if len(error) <= MAX_ERROR_CHARS:
        return error
    return _TRUNCATED + error[-(MAX_ERROR_CHARS - len(_TRUNCATED)) :]


def _tag_value(key: str, value: Any) -> str:
    """Writes a tag value as text within MLflow's limit; an error keeps its informative end."""
    if key == ERROR_TAG:
        return _error_text(value if isinstance(value, BaseException) else _to_text(value))
    return _clip(_to_text(value), MAX_TAG_VAL_LENGTH)


def _filter_value(value: str) -> str:
    """Quotes a value for an MLflow filter string, which has no escape for quotes."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"an id may not contain both kinds of quote: {value!r}")


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """Returns the explicit URI, else ``MLFLOW_TRACKING_URI``, else MLflow's default.

    A relative SQLite path (MLflow's default is ``sqlite:///mlflow.db``) is made absolute here,
    because Ray Tune moves each trial into its own working directory and the same relative URI
    would then name a different, empty database.
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path, sep, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:" and not path.startswith("/"):
            uri = f"{prefix}{Path(path).resolve()}{sep}{query}"
    return uri


#: URI schemes MLflow's tracking stores understand (SQLAlchemy dialects, a server, a workspace).
STORE_SCHEMES = (
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "http",
    "https",
    "databricks",
    "file",
)
#: How long a store check waits for an HTTP tracking server before refusing it.
STORE_CHECK_TIMEOUT_S = 5.0


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores and ``:memory:``."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix) :].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def check_tracking_uri(uri: str, field: str = "--tracking-uri") -> None:
    """Refuse a store no run could be written to, before Ray or any output exists.

    An unknown scheme; a SQLite file whose folder is missing or read-only; an HTTP server that
    does not answer within :data:`STORE_CHECK_TIMEOUT_S` (a store that fails later, mid-sweep,
    is covered by the writer's retries; one that never answered is a typo). The message shows
    the URI without its credentials.
    """
    shown = redact_uri(uri)
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            field, f"unknown store scheme in {shown!r}; allowed: {', '.join(STORE_SCHEMES)}"
        )
    database = sqlite_path(uri)
    if database is not None:
        folder = database.parent
        if not folder.is_dir():
            raise ConfigError(field, f"{shown}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK) or (
            database.exists() and not os.access(database, os.W_OK)
        ):
            raise ConfigError(field, f"{shown}: {database} is not writable")
    if scheme in ("http", "https"):
        parts = urlsplit(uri)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        health = urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))
        headers = {}
        if parts.username or parts.password:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        request = urllib.request.Request(health, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=STORE_CHECK_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass  # it answered: a server is there (auth and paths are the writer's concern)
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ConfigError(
                field,
                f"no MLflow server answers at {shown} within {STORE_CHECK_TIMEOUT_S:g} s "
                f"({reason})",
            ) from None


@contextlib.contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """Serialise the first use of a SQLite store between processes.

    MLflow creates a new database's tables on first use, and two processes doing that at once
    race (``table _alembic_tmp_experiments already exists``). A ``flock`` on a file beside the
    database makes the second wait until the first has created it. Other stores need none.
    """
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    with open(f"{database}.lock", "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, MlflowException):
        return exc.error_code in _PERMANENT_ERROR_CODES
    return isinstance(exc, TypeError | ValueError)


class _AbandonedError(Exception):
    """Raised inside the writer when close() gave up waiting on an unreachable store."""


@dataclass(slots=True)
class _Log:
    run_id: str
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    epoch: bool = False
    """The metrics are one epoch of :meth:`Tracker.log_epoch` (dropped if the run holds it)."""


@dataclass(slots=True)
class _Status:
    run_id: str
    status: str
    end_time: int | None


@dataclass(slots=True)
class _Artifact:
    run_id: str
    staged: Path
    artifact_path: str | None


@dataclass(frozen=True, slots=True)
class _Opening:
    """How to find a run by its tags, and what to create when none exists."""

    query: str
    name: str
    tags: dict[str, str]


@dataclass(slots=True)
class _Open:
    """Open ``opening`` in the writer and write what was queued under ``provisional_id`` to it."""

    provisional_id: str
    opening: _Opening


@dataclass(frozen=True, slots=True)
class _Found:
    """A run the store already held when it was opened."""

    params: dict[str, str]
    last_step: int | None


_Op = _Log | _Status | _Artifact | _Open


@dataclass(slots=True)
class _RunState:
    """What this tracker knows a run holds, so it can refuse duplicates without asking."""

    last_step: int | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredRun:
    """A trial run as the store holds it."""

    run_id: str
    status: str
    trial_status: str | None


class Tracker:
    """Records sweeps and trials in MLflow without making the caller wait on the store.

    Every logging method returns after appending to an in-memory queue; a single background
    thread writes it out in order. :meth:`sweep_run` is synchronous because the caller needs
    the run id; it retries a store that is down for up to ``sync_timeout`` seconds.
    :meth:`child_run` waits ``open_timeout`` at most, then leaves the opening to the writer and
    returns a provisional id. Use it as a context manager, or call
    :meth:`close`, so that pending records are written before the process ends. One tracker
    per process; it cannot be pickled into Ray workers, which make their own.

    Against an HTTP store the constructor sets ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and
    ``MLFLOW_HTTP_REQUEST_TIMEOUT=10`` for the whole process unless they are already set, so an
    outage is noticed at once and retried here instead of inside MLflow's client for minutes.

    Args:
        tracking_uri: Store URI; see :func:`resolve_tracking_uri`.
        experiment: Experiment name, created if missing (do this from the driver before many
            processes write: concurrent first creation of a SQLite store fails).
        artifact_location: Artifact root for a newly created experiment.
        retry_initial: First wait, in seconds, after a failed write.
        retry_max: Cap on the doubling wait between retries.
        sync_timeout: How long synchronous calls keep retrying before they raise.
        open_timeout: How long :meth:`child_run` waits for the store before it hands the
            run's opening to the writer and returns a provisional id.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        artifact_location: str | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
        sync_timeout: float = 60.0,
        open_timeout: float = 5.0,
    ) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        if self.tracking_uri.startswith(("http://", "https://")):
            for name, value in _HTTP_ENV_DEFAULTS.items():
                os.environ.setdefault(name, value)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._sync_timeout = sync_timeout
        self._open_timeout = open_timeout
        with store_creation_lock(self.tracking_uri):
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            self.experiment_id = self._call(self._ensure_experiment, experiment, artifact_location)

        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._work_done = threading.Condition(self._lock)
        self._ops: deque[_Op] = deque()
        self._submitted = 0
        self._completed = 0
        self._dropped = 0
        self._closed = False
        self._abandon = threading.Event()
        self._runs: dict[str, _RunState] = {}
        self._valid_keys: set[tuple[str, str]] = set()
        self._staging: Path | None = None
        self._staged_count = itertools.count()
        self._outage_since: float | None = None
        self._provisional = itertools.count()
        self._aliases: dict[str, str | None] = {}
        self._floors: dict[str, int] = {}
        self._writer = threading.Thread(target=self._write_loop, name="mlflow-writer", daemon=True)
        self._writer.start()

    @property
    def shown_uri(self) -> str:
        """The store's URI as it may be printed: without its password."""
        return redact_uri(self.tracking_uri)

    # ----------------------------------------------------------------------------- runs

    def sweep_run(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        *,
        sweep_id: str,
    ) -> str:
        """Returns the run of a sweep (or of a comparison), re-opening it if it exists.

        The run is found by its tag ``margin_tune.sweep_id``, so a resumed sweep keeps
        logging into the run it started. ``parent_run_id`` nests the sweep under a
        comparison run.
        """
        query = f"tags.`{SWEEP_ID_TAG}` = {_filter_value(sweep_id)}"
        run_tags = {**(tags or {}), SWEEP_ID_TAG: sweep_id}
        return self._open_run(query, name, params, run_tags, parent_run_id)

    def find_sweep_run(self, sweep_id: str) -> str | None:
        """The run of a sweep (or comparison) by its id, left as it is; None if there is none."""
        found = self._call(
            self._client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{SWEEP_ID_TAG}` = {_filter_value(sweep_id)}",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return found[0].info.run_id if found else None

    def child_run(
        self,
        parent_run_id: str,
        trial_id: str,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
    ) -> str:
        """Returns the run of one trial under its sweep, re-opening it if it exists.

        A run tagged ``margin_tune.trial_id == trial_id`` under the same parent is reused and
        set back to RUNNING, and the highest step it holds is loaded, so a restored trial
        neither duplicates its run nor re-logs its epochs.

        Never raises because the store is unreachable: after ``open_timeout`` seconds (at once
        while the writer is already waiting for the store) it returns a provisional id, usable
        with every method of this tracker, and the writer opens the run when the store is back.
        With ``wait=False`` it returns a provisional id at once and the writer opens the run in
        order with what is logged to it: Ray Tune's event loop, which calls this as each trial
        starts, then never waits on the store's search and create (~0.1 s a run on sqlite).
        """
        query = (
            f"tags.{MLFLOW_PARENT_RUN_ID} = {_filter_value(parent_run_id)} "
            f"and tags.`{TRIAL_ID_TAG}` = {_filter_value(trial_id)}"
        )
        run_tags = {**(tags or {}), TRIAL_ID_TAG: trial_id}
        return self._open_run(
            query, name or trial_id, params, run_tags, parent_run_id, deferrable=True, wait=wait
        )

    def child_runs(self, parent_run_id: str) -> dict[str, StoredRun]:
        """Trial id → stored state of every trial run under ``parent_run_id`` (one search).

        What the store holds now: flush first to include what this process queued.
        """
        found = self._call(
            self._client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = {_filter_value(parent_run_id)}",
            max_results=50000,
        )
        return {
            run.data.tags[TRIAL_ID_TAG]: StoredRun(
                run.info.run_id, run.info.status, tag_value(run.data.tags, STATUS_TAG) or None
            )
            for run in found
            if TRIAL_ID_TAG in run.data.tags
        }

    def _open_run(
        self,
        query: str,
        name: str,
        params: Mapping[str, Any] | None,
        tags: Mapping[str, Any],
        parent_run_id: str | None,
        *,
        deferrable: bool = False,
        wait: bool = True,
    ) -> str:
        clean_tags = self._clean_tags(tags)
        if parent_run_id is not None:
            clean_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        opening = _Opening(query, name, clean_tags)
        if deferrable and (not wait or self._outage_since is not None):
            run_id = self._defer(opening)
        else:
            timeout = self._open_timeout if deferrable else self._sync_timeout
            try:
                run_id, found = self._call(self._find_or_create, opening, timeout=timeout)
            except Exception as exc:
                if not deferrable or _is_permanent(exc):
                    raise
                _logger.warning("MLflow store unreachable (%s); run %r opened later", exc, name)
                if self._outage_since is None:  # until the writer gets through again
                    self._outage_since = time.monotonic()
                run_id = self._defer(opening)
            else:
                if found is not None:
                    with self._lock:
                        state = self._runs.setdefault(run_id, _RunState())
                        state.params.update(found.params)
                        if found.last_step is not None and (
                            state.last_step is None or found.last_step > state.last_step
                        ):
                            state.last_step = found.last_step
                    self._submit(_Status(run_id, "RUNNING", None))
                    self.set_tags(run_id, clean_tags)
        if params:
            self.log_params(run_id, params)
        return run_id

    def _defer(self, opening: _Opening) -> str:
        """Queues the opening for the writer; returns the provisional id that stands for it."""
        with self._lock:
            provisional_id = f"{_PROVISIONAL}{next(self._provisional)}"
            self._enqueue(_Open(provisional_id, opening))
        return provisional_id

    def _find_or_create(self, opening: _Opening) -> tuple[str, _Found | None]:
        """One idempotent attempt to open a run: found by its tags, else created.

        Searching before every create makes retries safe: a create that reached the store but
        whose answer was lost is found by the next attempt instead of being made twice. A found
        run comes with its params and the highest step it holds over all its metrics.
        """
        found = self._client.search_runs(
            [self.experiment_id],
            filter_string=opening.query,
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        if not found:
            run = self._client.create_run(
                self.experiment_id, run_name=opening.name, tags=opening.tags
            )
            return run.info.run_id, None
        run = found[0]
        steps = [
            metric.step
            for key in run.data.metrics
            for metric in self._client.get_metric_history(run.info.run_id, key)
        ]
        return run.info.run_id, _Found(dict(run.data.params), max(steps, default=None))

    # -------------------------------------------------------------------------- logging

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int) -> bool:
        """Queues one epoch's metrics at ``step``; returns False if the step was dropped.

        A step at or below the highest one this run already holds is dropped, so an epoch
        replayed after a restore is recorded once.
        """
        timestamp = int(time.time() * 1000)
        step = int(step)
        rows = [(key, float(value), timestamp, step) for key, value in metrics.items()]
        for key, *_ in rows:
            self._check_key("metric", key)
        if not rows:
            return False
        with self._lock:
            state = self._runs.setdefault(run_id, _RunState())
            if state.last_step is not None and step <= state.last_step:
                return False
            state.last_step = step
            self._enqueue(_Log(run_id, metrics=rows, epoch=True))
        return True

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Queues summary metrics (a sweep's best score, wall time) outside the epoch record.

        Unlike :meth:`log_epoch` nothing is de-duplicated: logging a key again adds a point to
        its history, and the point with the highest step (then the latest) is the run's value.
        """
        timestamp = int(time.time() * 1000)
        rows = [(key, float(value), timestamp, int(step)) for key, value in metrics.items()]
        for key, *_ in rows:
            self._check_key("metric", key)
        if rows:
            self._submit(_Log(run_id, metrics=rows))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Queues params (nested mappings become dotted keys); known equal values are skipped.

        MLflow params are immutable, so a key already logged with a different value raises
        :class:`ValueError` here, in the caller, instead of failing later in the writer.
        """
        flat = {
            key: _clip(value, MAX_PARAM_VAL_LENGTH) for key, value in flatten_params(params).items()
        }
        for key in flat:
            self._check_key("param", key)
        with self._lock:
            known = self._runs.setdefault(run_id, _RunState()).params
            changed = {k: (known[k], v) for k, v in flat.items() if k in known and known[k] != v}
            if changed:
                raise ValueError(f"run {run_id}: params cannot change (old, new): {changed}")
            new = {key: value for key, value in flat.items() if key not in known}
            if new:
                known.update(new)
                self._enqueue(_Log(run_id, params=new))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Queues tags; values that are not strings are written as JSON text.

        ``margin_tune.error`` is cut like :meth:`end_run` cuts it, whichever way it is set.
        """
        clean = self._clean_tags(tags)
        if clean:
            self._submit(_Log(run_id, tags=clean))

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> None:
        """Queues a file for upload, after everything logged before it.

        The file is copied to a private staging directory at once, so the caller may delete
        or overwrite it; the upload is retried through outages like every other write.
        """
        source = Path(local_path)
        staged = self._stage() / source.name
        shutil.copy2(source, staged)
        self._submit(_Artifact(run_id, staged, artifact_path))

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> None:
        """Queues a directory's contents for upload, staged and ordered like a single file."""
        staged = self._stage() / "contents"
        shutil.copytree(local_dir, staged)
        self._submit(_Artifact(run_id, staged, artifact_path))

    def end_run(
        self,
        run_id: str,
        status: RunEndStatus = "FINISHED",
        error: str | BaseException | None = None,
    ) -> None:
        """Queues the end of a run after its pending records; ``error`` becomes a tag.

        The error text (a traceback for an exception) is cut to its last 5000 characters and
        stored as ``margin_tune.error``.
        """
        if status not in _END_STATUSES:
            raise ValueError(f"status must be one of {sorted(_END_STATUSES)}, not {status!r}")
        if error is not None:
            self.set_tags(run_id, {ERROR_TAG: _error_text(error)})
        self._submit(_Status(run_id, status, int(time.time() * 1000)))

    # ------------------------------------------------------------------------ lifecycle

    @property
    def pending(self) -> int:
        """Queued operations not yet written (or given up as invalid)."""
        with self._lock:
            return self._submitted - self._completed

    @property
    def dropped(self) -> int:
        """Records the store rejected as invalid, so they were given up; each was logged."""
        with self._lock:
            return self._dropped

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything queued before this call is written.

        Returns False, with a warning naming how many operations are still pending, if
        ``timeout`` seconds pass first (for example while the store is down).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            while self._completed < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    _logger.warning(
                        "MLflow flush timed out with %d operations pending",
                        self._submitted - self._completed,
                    )
                    return False
                self._work_done.wait(left)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flushes, then stops the writer; returns False if records had to be abandoned.

        With ``timeout`` None this waits for the store however long it is down, which is the
        only way to keep every record; a finite timeout trades that for a bounded exit.
        """
        if self._closed:
            return True
        flushed = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._has_work.notify()
        if not flushed:
            self._abandon.set()
            _logger.error("closing MLflow tracker: %d operations abandoned", self.pending)
        self._writer.join()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        return flushed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ caller helpers

    def _check_key(self, kind: str, key: str) -> None:
        """Rejects a bad name in the caller, where the error is useful, once per name."""
        if (kind, key) in self._valid_keys:
            return
        _NAME_VALIDATORS[kind](key)
        if len(key) > MAX_ENTITY_KEY_LENGTH:
            raise ValueError(f"{kind} name longer than {MAX_ENTITY_KEY_LENGTH}: {key[:80]}...")
        self._valid_keys.add((kind, key))

    def _clean_tags(self, tags: Mapping[str, Any]) -> dict[str, str]:
        for key in tags:
            self._check_key("tag", key)
        return {key: _tag_value(key, value) for key, value in tags.items()}

    def _stage(self) -> Path:
        """Makes a fresh slot in the staging directory that holds artifacts until uploaded."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the MLflow tracker is closed")
            if self._staging is None:
                self._staging = Path(tempfile.mkdtemp(prefix="margin-tune-artifacts-"))
            slot = self._staging / str(next(self._staged_count))
        slot.mkdir()
        return slot

    def _submit(self, op: _Op) -> None:
        with self._lock:
            self._enqueue(op)

    def _enqueue(self, op: _Op) -> None:
        """Appends under the held lock; the one point where callers hand work to the writer."""
        if self._closed:
            raise RuntimeError("the MLflow tracker is closed")
        self._ops.append(op)
        self._submitted += 1
        self._has_work.notify()

    def _ensure_experiment(self, name: str, artifact_location: str | None) -> str:
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self._client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException as exc:  # another process created it in between
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self._client.get_experiment_by_name(name)
        if experiment is None or experiment.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {name!r} is deleted; restore or rename it")
        return experiment.experiment_id

    def _call(
        self,
        function: Callable[..., _T],
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _T:
        """Runs a synchronous store call, retrying an unreachable store up to ``timeout``
        seconds (default ``sync_timeout``)."""
        deadline = time.monotonic() + (self._sync_timeout if timeout is None else timeout)
        delay = self._retry_initial
        while True:
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                if _is_permanent(exc) or time.monotonic() + delay > deadline:
                    raise
                _logger.warning("MLflow store unreachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    # ------------------------------------------------------------------------- writer

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._ops and not self._closed:
                    self._has_work.wait()
                if not self._ops:
                    return
                ops = list(self._ops)
                self._ops.clear()
            try:
                self._write(ops)
            except _AbandonedError:
                return
            except Exception:  # a bug here must not kill the writer and hang flush()
                _logger.exception("MLflow writer gave up %d operations", len(ops))
                with self._lock:
                    self._dropped += len(ops)
            with self._lock:
                self._completed += len(ops)
                self._work_done.notify_all()

    def _write(self, ops: list[_Op]) -> None:
        """Writes ops in order, merging consecutive records per run into few batches."""
        merged: dict[str, _Log] = {}
        for op in ops:
            if isinstance(op, _Log):
                run_id = self._resolve(op.run_id)
                if run_id is None:
                    continue
                metrics = op.metrics
                floor = self._floors.get(op.run_id)
                if op.epoch and floor is not None:
                    metrics = [row for row in metrics if row[3] > floor]
                into = merged.setdefault(run_id, _Log(run_id))
                into.metrics.extend(metrics)
                into.params.update(op.params)
                into.tags.update(op.tags)
                continue
            self._write_logs(merged)
            merged = {}
            if isinstance(op, _Open):
                self._write_open(op)
                continue
            run_id = self._resolve(op.run_id)
            if run_id is None:
                continue
            if isinstance(op, _Status):
                self._write_status(_Status(run_id, op.status, op.end_time))
            else:
                self._write_artifact(_Artifact(run_id, op.staged, op.artifact_path))
        self._write_logs(merged)

    def _resolve(self, run_id: str) -> str | None:
        """The store's id for ``run_id``; None (the record is dropped) if its opening failed."""
        if not run_id.startswith(_PROVISIONAL):
            return run_id
        resolved = self._aliases.get(run_id)
        if resolved is None:
            with self._lock:
                self._dropped += 1
        return resolved

    def _write_open(self, op: _Open) -> None:
        """Opens a deferred run; a re-opened one gets the treatment :meth:`_open_run` gives."""
        try:
            run_id, found = self._retry(self._find_or_create, op.opening)
            if found is not None:
                self._retry(self._client.update_run, run_id, status="RUNNING")
                tags = [RunTag(key, value) for key, value in op.opening.tags.items()]
                self._retry(self._client.log_batch, run_id, tags=tags)
                if found.last_step is not None:
                    self._floors[op.provisional_id] = found.last_step
        except _AbandonedError:
            raise
        except Exception as exc:
            self._aliases[op.provisional_id] = None
            self._drop(f"opening of run {op.opening.name!r}", exc)
            return
        self._aliases[op.provisional_id] = run_id

    def _write_logs(self, merged: Mapping[str, _Log]) -> None:
        for log in merged.values():
            for metrics, params, tags in _chunks(log):
                try:
                    self._retry(self._client.log_batch, log.run_id, metrics, params, tags)
                except _AbandonedError:
                    raise
                except Exception as exc:
                    self._salvage(log.run_id, [*metrics, *params, *tags], exc)

    def _salvage(
        self, run_id: str, entities: list[Metric | Param | RunTag], exc: Exception
    ) -> None:
        """Writes a rejected batch one record at a time so one bad record loses only itself."""
        lost = 0
        for entity in entities:
            single = {_BATCH_FIELDS[type(entity)]: [entity]}
            try:
                self._retry(self._client.log_batch, run_id, **single)
            except _AbandonedError:
                raise
            except Exception:
                lost += 1
        _logger.error(
            "MLflow rejected %d of %d records for run %s: %s", lost, len(entities), run_id, exc
        )
        with self._lock:
            self._dropped += lost

    def _write_status(self, op: _Status) -> None:
        try:
            if op.end_time is None:
                self._retry(self._client.update_run, op.run_id, status=op.status)
            else:
                self._retry(self._client.set_terminated, op.run_id, op.status, op.end_time)
        except _AbandonedError:
            raise
        except Exception as exc:
            self._drop(f"status {op.status} of run {op.run_id}", exc)

    def _write_artifact(self, op: _Artifact) -> None:
        upload = self._client.log_artifacts if op.staged.is_dir() else self._client.log_artifact
        try:
            self._retry(upload, op.run_id, str(op.staged), op.artifact_path)
        except _AbandonedError:
            raise
        except Exception as exc:
            self._drop(f"artifact {op.staged.name} of run {op.run_id}", exc)
        shutil.rmtree(op.staged.parent, ignore_errors=True)

    def _drop(self, what: str, exc: Exception) -> None:
        _logger.error("MLflow rejected %s: %s", what, exc)
        with self._lock:
            self._dropped += 1

    def _retry(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Calls until the store accepts, with capped doubling waits; re-raises a bad request."""
        delay = self._retry_initial
        while True:
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                if _is_permanent(exc):
                    raise
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    _logger.warning("MLflow store unreachable, keeping records (%s)", exc)
                if self._abandon.wait(delay):
                    raise _AbandonedError from exc
                delay = min(delay * 2, self._retry_max)
                continue
            if self._outage_since is not None:
                _logger.warning(
                    "MLflow store reachable again after %.1f s",
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
            return result


def _chunks(log: _Log) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
    """Splits one run's records into log_batch calls within every limit MLflow enforces."""
    entities: Iterator[Metric | Param | RunTag] = itertools.chain(
        (Param(key, value) for key, value in log.params.items()),
        (RunTag(key, value) for key, value in log.tags.items()),
        (Metric(key, value, timestamp, step) for key, value, timestamp, step in log.metrics),
    )
    parts: dict[type, list[Any]] = {kind: [] for kind in _BATCH_LIMITS}
    count = size = 0
    for entity in entities:
        kind = type(entity)
        value = entity.value if isinstance(entity, Param | RunTag) else 0
        cost = _ENTITY_JSON_OVERHEAD + len(json.dumps(entity.key)) + len(json.dumps(value))
        if count and (
            len(parts[kind]) == _BATCH_LIMITS[kind]
            or count == MAX_ENTITIES_PER_BATCH
            or size + cost > _REQUEST_BUDGET
        ):
            yield parts[Metric], parts[Param], parts[RunTag]
            parts = {kind: [] for kind in _BATCH_LIMITS}
            count = size = 0
        parts[kind].append(entity)
        count += 1
        size += cost
    if count:
        yield parts[Metric], parts[Param], parts[RunTag]
