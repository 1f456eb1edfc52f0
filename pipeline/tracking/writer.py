"""The background writer: one thread that drains the tracker's queue into the MLflow store.

Callers only append to a queue; this thread merges what is pending per run into ``log_batch``
calls within MLflow's limits and keeps retrying with capped exponential backoff while the store
is unreachable, so nothing recorded is lost while the process lives. Each drain first lingers
up to :data:`LINGER_S` for more records, unless a caller is flushing: a store write costs about
the same for one epoch's metrics as for ten (a SQLite ``log_batch`` was 12.8 ms of CPU, most of
it per call), and a sweep's trials report many times a second. Retrying is safe because
every value carries the timestamp taken when it was logged, and MLflow ignores a metric it
already holds with the same key, step, timestamp and value.

A run opened while the store was down gets a provisional id (:data:`PROVISIONAL`); the writer
opens the real run when the store is back and writes everything queued under the provisional
id to it. A record the store rejects as invalid is written alone, so it loses only itself, and
is counted in :attr:`Writer.dropped`.

Private to :mod:`margin_tune.pipeline.tracking`: :class:`~.tracker.Tracker` is the API.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import LoggedModel, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri
from mlflow.utils.validation import (
    MAX_BATCH_LOG_REQUEST_SIZE,
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
)

from margin_tune.pipeline.tracking.provenance import reopening_tags
from margin_tune.pipeline.tracking.records import DatasetRecord

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
#: Prefix of the id a run gets while the store is down; MLflow's run ids are hexadecimal, so
#: the two never collide.
PROVISIONAL = "pending-"
#: How long a drain waits for more records before it writes (a flush or close cuts it short):
#: what the MLflow UI lags behind a trial at most, beyond the write itself.
LINGER_S = 0.5
#: A drain writes at once when this many operations are queued.
LINGER_MAX_OPS = 2000
# The REST handler rejects a log-batch body over MAX_BATCH_LOG_REQUEST_SIZE bytes of JSON.
_REQUEST_BUDGET = int(MAX_BATCH_LOG_REQUEST_SIZE * 0.9)
_ENTITY_JSON_OVERHEAD = 96
_BATCH_LIMITS = {
    Metric: MAX_METRICS_PER_BATCH,
    Param: MAX_PARAMS_TAGS_PER_BATCH,
    RunTag: MAX_PARAMS_TAGS_PER_BATCH,
}
_BATCH_FIELDS = {Metric: "metrics", Param: "params", RunTag: "tags"}

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")


def is_permanent(exc: Exception) -> bool:
    """Whether a failed store call was refused for what it asked (retrying cannot help)."""
    if isinstance(exc, MlflowException):
        return exc.error_code in _PERMANENT_ERROR_CODES
    return isinstance(exc, TypeError | ValueError)


class _AbandonedError(Exception):
    """Raised inside the writer when close() gave up waiting on an unreachable store."""


@dataclass(slots=True)
class Log:
    run_id: str
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    epoch: bool = False
    """The metrics are one epoch of ``Tracker.log_epoch`` (dropped if the run holds it)."""


@dataclass(slots=True)
class Status:
    run_id: str
    status: str
    end_time: int | None


@dataclass(slots=True)
class Artifact:
    run_id: str
    staged: Path
    artifact_path: str | None


@dataclass(slots=True)
class ModelUpload:
    """A saved MLflow model folder to log as a model of ``run_id`` (MLflow 3's logged model:
    the run's Models column, ``models:/<id>``), after everything logged to the run before."""

    run_id: str
    staged: Path
    name: str
    step: int
    tags: dict[str, str]


@dataclass(slots=True)
class Inputs:
    """Dataset inputs of ``run_id`` (``MlflowClient.log_inputs``). The store keeps one dataset
    per name and digest in an experiment and one input edge per dataset and run, so a retry or
    a resumed command logs nothing twice."""

    run_id: str
    records: tuple[DatasetRecord, ...]


@dataclass(frozen=True, slots=True)
class Opening:
    """How to find a run by its tags, and what to create when none exists.

    ``new``: no run can match yet (a trial's first run under a parent this process created),
    so the first attempt creates without searching; a retry searches all the same, since a
    create whose answer was lost may have reached the store.
    """

    query: str
    name: str
    tags: dict[str, str]
    new: bool = False


@dataclass(slots=True)
class Open:
    """Open ``opening`` in the writer and write what was queued under ``provisional_id`` to it."""

    provisional_id: str
    opening: Opening


@dataclass(frozen=True, slots=True)
class Found:
    """A run the store already held when it was opened."""

    params: dict[str, str]
    last_step: int | None


Op = Log | Status | Artifact | ModelUpload | Inputs | Open


class Attempts:
    """Attempts to open ``opening``: the first of a ``new`` one skips the search."""

    def __init__(self, client: MlflowClient, experiment_id: str, opening: Opening) -> None:
        self.client, self.experiment_id, self.opening = client, experiment_id, opening
        self.made = 0
        #: Where the run keeps its artifacts, when the last attempt created it.
        self.artifact_uri: str | None = None

    def __call__(self) -> tuple[str, Found | None]:
        search = not (self.opening.new and self.made == 0)
        self.made += 1
        run_id, found, self.artifact_uri = find_or_create(
            self.client, self.experiment_id, self.opening, search=search
        )
        return run_id, found


def find_or_create(
    client: MlflowClient, experiment_id: str, opening: Opening, *, search: bool = True
) -> tuple[str, Found | None, str | None]:
    """One idempotent attempt to open a run: found by its tags, else created; the run's id,
    what a found run holds, and a created run's artifact URI.

    Searching before every create makes retries safe: a create that reached the store but
    whose answer was lost is found by the next attempt instead of being made twice. A found
    run comes with its params and the highest step it holds over all its metrics. Without
    ``search`` (the first attempt at a run known to be new) it creates at once: the search
    was an eighth of a trial's bookkeeping (P6).
    """
    if not search:
        run = client.create_run(experiment_id, run_name=opening.name, tags=opening.tags)
        return run.info.run_id, None, run.info.artifact_uri
    found = client.search_runs(
        [experiment_id],
        filter_string=opening.query,
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if not found:
        run = client.create_run(experiment_id, run_name=opening.name, tags=opening.tags)
        return run.info.run_id, None, run.info.artifact_uri
    run = found[0]
    steps = [
        metric.step
        for key in run.data.metrics
        for metric in client.get_metric_history(run.info.run_id, key)
    ]
    return run.info.run_id, Found(dict(run.data.params), max(steps, default=None)), None


def find_or_create_model(
    client: MlflowClient, experiment_id: str, run_id: str, op: ModelUpload
) -> LoggedModel:
    """One idempotent attempt to get the logged model ``op.name`` of ``run_id``: the one the
    store holds, else a new one (PENDING until its artifacts are uploaded)."""
    found = client.search_logged_models(
        [experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{op.name}'",
        max_results=1,
    )
    if found:
        return found[0]
    return client.create_logged_model(
        experiment_id, name=op.name, source_run_id=run_id, tags=op.tags, model_type="embedder"
    )


class Writer:
    """A queue of store operations and the thread that writes them, in order.

    Args:
        client: The store's client (shared with the tracker's synchronous calls).
        experiment_id: Where deferred runs are opened.
        retry_initial: First wait, in seconds, after a failed write.
        retry_max: Cap on the doubling wait between retries.
    """

    def __init__(
        self,
        client: MlflowClient,
        experiment_id: str,
        *,
        retry_initial: float,
        retry_max: float,
    ) -> None:
        self._client = client
        self._experiment_id = experiment_id
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._work_done = threading.Condition(self._lock)
        self._ops: deque[Op] = deque()
        self._submitted = 0
        self._completed = 0
        self._dropped = 0
        self._closed = False
        self._flushing = 0
        #: Run openings in the queue: a drain with one does not linger (see ``_linger``).
        self._openings = 0
        #: Artifact repositories of the runs this writer created, by run id: an upload then
        #: needs no ``get_run`` to find where the run keeps its artifacts.
        self._repositories: dict[str, Any] = {}
        self._abandon = threading.Event()
        self._outage_since: float | None = None
        self._provisional = itertools.count()
        self._aliases: dict[str, str | None] = {}
        self._floors: dict[str, int] = {}
        self._thread = threading.Thread(target=self._write_loop, name="mlflow-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------ callers

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_outage(self) -> bool:
        """Whether the store last refused to answer (until a write gets through again)."""
        return self._outage_since is not None

    def note_outage(self) -> None:
        """A caller found the store unreachable: later openings are deferred at once."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()

    def submit(self, op: Op) -> None:
        """Appends ``op`` to the queue; the one point where callers hand work to the writer."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the MLflow tracker is closed")
            self._ops.append(op)
            self._submitted += 1
            self._openings += isinstance(op, Open)
            self._has_work.notify()

    def defer(self, opening: Opening) -> str:
        """Queues the opening of a run; returns the provisional id that stands for it."""
        with self._lock:
            provisional_id = f"{PROVISIONAL}{next(self._provisional)}"
        self.submit(Open(provisional_id, opening))
        return provisional_id

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
        """Waits until everything queued before this call is written; False on ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            self._flushing += 1
            self._has_work.notify()  # a lingering drain writes now
            try:
                while self._completed < target:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        _logger.warning(
                            "MLflow flush timed out with %d operations pending",
                            self._submitted - self._completed,
                        )
                        return False
                    self._work_done.wait(left)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flushes, then stops the thread; returns False if records had to be abandoned."""
        flushed = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._has_work.notify()
        if not flushed:
            self._abandon.set()
            _logger.error("closing MLflow tracker: %d operations abandoned", self.pending)
        self._thread.join()
        return flushed

    # ------------------------------------------------------------------------- thread

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._ops and not self._closed:
                    self._has_work.wait()
                if not self._ops:
                    return
                self._linger()
                ops = list(self._ops)
                self._ops.clear()
                self._openings = 0
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

    def _linger(self) -> None:
        """Holds the drain (lock held) up to :data:`LINGER_S` so that more records join it,
        unless a caller flushes, the writer closes, the queue is long, the store is down or a
        run waits to be opened.

        A run is opened at once: a driver killed meanwhile loses at most the records of the
        linger, which ``resume`` writes again from Ray Tune's results, but a run never made
        cannot be found again for a trial Tune's last snapshot missed.
        """
        deadline = time.monotonic() + LINGER_S
        while (
            not self._flushing
            and not self._closed
            and self._outage_since is None
            and len(self._ops) < LINGER_MAX_OPS
            and not self._openings
        ):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._has_work.wait(left)

    def _write(self, ops: list[Op]) -> None:
        """Writes ops in order for each run, merging each run's records into few batches.

        A run's pending records are written before its status changes and before a model is
        logged to it (a finished run holds everything logged to it; a model's step refers to
        them); artifacts and dataset inputs do not depend on them, nor do other runs' records,
        so those are left pending and merged with what comes later.
        """
        merged: dict[str, Log] = {}
        for op in ops:
            if isinstance(op, Log):
                run_id = self._resolve(op.run_id)
                if run_id is None:
                    continue
                metrics = op.metrics
                floor = self._floors.get(op.run_id)
                if op.epoch and floor is not None:
                    metrics = [row for row in metrics if row[3] > floor]
                into = merged.setdefault(run_id, Log(run_id))
                into.metrics.extend(metrics)
                into.params.update(op.params)
                into.tags.update(op.tags)
                continue
            if isinstance(op, Open):
                self._write_open(op)
                continue
            run_id = self._resolve(op.run_id)
            if run_id is None:
                continue
            if isinstance(op, Status | ModelUpload) and run_id in merged:
                self._write_logs({run_id: merged.pop(run_id)})
            if isinstance(op, Status):
                self._write_status(Status(run_id, op.status, op.end_time))
            elif isinstance(op, ModelUpload):
                self._write_model(op, run_id)
            elif isinstance(op, Inputs):
                self._write_inputs(op, run_id)
            else:
                self._write_artifact(Artifact(run_id, op.staged, op.artifact_path))
        self._write_logs(merged)

    def _resolve(self, run_id: str) -> str | None:
        """The store's id for ``run_id``; None (the record is dropped) if its opening failed."""
        if not run_id.startswith(PROVISIONAL):
            return run_id
        resolved = self._aliases.get(run_id)
        if resolved is None:
            with self._lock:
                self._dropped += 1
        return resolved

    def _write_open(self, op: Open) -> None:
        """Opens a deferred run; a re-opened one is set RUNNING again and re-tagged, and the
        epochs it already holds are not written twice."""
        try:
            attempts = Attempts(self._client, self._experiment_id, op.opening)
            run_id, found = self._retry(attempts)
            if attempts.artifact_uri is not None:
                # As MlflowClient finds a run's repository, less the get_run it starts with.
                uri = add_databricks_profile_info_to_artifact_uri(
                    attempts.artifact_uri, self._client.tracking_uri
                )
                self._repositories[run_id] = get_artifact_repository(
                    uri, tracking_uri=self._client.tracking_uri
                )
            if found is not None:
                self._retry(self._client.update_run, run_id, status="RUNNING")
                reopened = reopening_tags(op.opening.tags)
                tags = [RunTag(key, value) for key, value in reopened.items()]
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

    def _write_logs(self, merged: Mapping[str, Log]) -> None:
        for log in merged.values():
            for metrics, params, tags in chunks(log):
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

    def _write_status(self, op: Status) -> None:
        try:
            if op.end_time is None:
                self._retry(self._client.update_run, op.run_id, status=op.status)
            else:
                self._retry(self._client.set_terminated, op.run_id, op.status, op.end_time)
        except _AbandonedError:
            raise
        except Exception as exc:
            self._drop(f"status {op.status} of run {op.run_id}", exc)

    def _write_artifact(self, op: Artifact) -> None:
        repository = self._repositories.get(op.run_id)
        try:
            if repository is None:
                upload = (
                    self._client.log_artifacts if op.staged.is_dir() else self._client.log_artifact
                )
                self._retry(upload, op.run_id, str(op.staged), op.artifact_path)
            elif op.staged.is_dir():
                self._retry(repository.log_artifacts, str(op.staged), op.artifact_path)
            else:
                self._retry(repository.log_artifact, str(op.staged), op.artifact_path)
        except _AbandonedError:
            raise
        except Exception as exc:
            self._drop(f"artifact {op.staged.name} of run {op.run_id}", exc)
        shutil.rmtree(op.staged.parent, ignore_errors=True)

    def _write_inputs(self, op: Inputs, run_id: str) -> None:
        datasets = [record.to_mlflow() for record in op.records]
        try:
            self._retry(self._client.log_inputs, run_id, datasets=datasets)
        except _AbandonedError:
            raise
        except Exception as exc:
            self._drop(f"dataset inputs of run {run_id}", exc)

    def _write_model(self, op: ModelUpload, run_id: str) -> None:
        """Log the model in ``op.staged`` as a model of ``run_id``, once.

        The model is found by its run and name before one is created, so a retry after a lost
        answer, or a resumed command, never makes a second one; one found READY is done. The
        folder's ``MLmodel`` gets the model's and the run's ids before it is uploaded, as
        ``mlflow.<flavor>.log_model`` writes them.
        """
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        client = self._client
        try:
            # Searched before every create, in one retried unit (as runs are opened): a create
            # that reached the store but whose answer was lost is found, not made twice.
            logged = self._retry(find_or_create_model, client, self._experiment_id, run_id, op)
            if logged.status != LoggedModelStatus.READY:
                description = Model.load(str(op.staged))
                description.model_id = description.model_uuid = logged.model_id
                description.run_id = run_id
                description.artifact_path = logged.artifact_location
                description.save(str(op.staged / "MLmodel"))
                # Linked to its run first, as mlflow's Model.log does: a model found READY
                # later (a resumed command) is linked already.
                output = LoggedModelOutput(logged.model_id, step=op.step)
                self._retry(client.log_outputs, run_id, [output])
                self._retry(client.log_model_artifacts, logged.model_id, str(op.staged))
                self._retry(client.finalize_logged_model, logged.model_id, LoggedModelStatus.READY)
        except _AbandonedError:
            raise
        except Exception as exc:
            self._drop(f"model {op.name} of run {run_id}", exc)
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
                if is_permanent(exc):
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


def chunks(log: Log) -> Iterator[tuple[list[Metric], list[Param], list[RunTag]]]:
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
