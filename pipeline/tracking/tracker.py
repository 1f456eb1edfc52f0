"""The one place that writes to MLflow: sweep and trial runs, written off the training loop.

Layout in the store: an experiment holds sweeps; each sweep is a parent run, each trial a child
run nested under it with the tag ``mlflow.parentRunId`` (a comparison adds one more level above
the sweeps). Only :class:`mlflow.MlflowClient` is used, never the fluent ``mlflow.start_run``
state, so several trackers can live in one process.

The package is layered like optuna's storages, an API over a backend:

- :class:`Tracker` (here) is the API: it checks what a caller logs, in the caller, and keeps
  what it knows each run holds, so duplicates are refused without asking the store.
- :mod:`~margin_tune.pipeline.tracking.writer` is the private backend: one thread that drains
  a queue into ``log_batch`` calls within MLflow's limits, through outages. One ``log_batch``
  on SQLite costs about 10 ms and an HTTP store can be down for minutes, while the training
  loop must never wait.
- :mod:`~margin_tune.pipeline.tracking.reader` reads an experiment back for ``report``;
  :mod:`~margin_tune.pipeline.tracking.store` resolves and checks the store's URI;
  :mod:`~margin_tune.pipeline.tracking.records` turns values into params and tags.

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

import dataclasses
import itertools
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from margin_tune.pipeline.runtime.secrets import redact_uri
from margin_tune.pipeline.tracking.provenance import provenance_tags, reopening_tags
from margin_tune.pipeline.tracking.records import (
    DatasetRecord,
    check_name,
    clip,
    error_text,
    filter_value,
    flatten_params,
    tag_text,
)
from margin_tune.pipeline.tracking.store import (
    DEFAULT_EXPERIMENT,
    as_global_store,
    fail_fast_over_http,
    resolve_tracking_uri,
    store_creation_lock,
)
from margin_tune.pipeline.tracking.vocabulary import (
    ERROR_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    TRIAL_ID_TAG,
    tag_value,
)
from margin_tune.pipeline.tracking.writer import (
    Artifact,
    Attempts,
    Inputs,
    Log,
    ModelUpload,
    Opening,
    Status,
    Writer,
    is_permanent,
)

RunEndStatus = Literal["FINISHED", "FAILED", "KILLED"]
_END_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")


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
        fail_fast_over_http(self.tracking_uri)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._sync_timeout = sync_timeout
        self._open_timeout = open_timeout
        with store_creation_lock(self.tracking_uri):
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            self.experiment_id = self._call(self._ensure_experiment, experiment, artifact_location)

        # Guards what the tracker knows of its runs; taken before the writer's own lock.
        self._lock = threading.Lock()
        self._runs: dict[str, _RunState] = {}
        #: Runs this tracker created (none was found): no child can exist under them yet.
        self._created: set[str] = set()
        #: Child queries opened as new: a second opening of one must search again.
        self._opened_new: set[str] = set()
        self._valid_keys: set[tuple[str, str]] = set()
        self._staging: Path | None = None
        self._staged_count = itertools.count()
        self._writer = Writer(
            self._client, self.experiment_id, retry_initial=retry_initial, retry_max=retry_max
        )

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
        query = f"tags.`{SWEEP_ID_TAG}` = {filter_value(sweep_id)}"
        run_tags = {**(tags or {}), SWEEP_ID_TAG: sweep_id}
        return self._open_run(query, name, params, run_tags, parent_run_id)

    def find_sweep_run(self, sweep_id: str) -> str | None:
        """The run of a sweep (or comparison) by its id, left as it is; None if there is none."""
        found = self._call(
            self._client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{SWEEP_ID_TAG}` = {filter_value(sweep_id)}",
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
            f"tags.{MLFLOW_PARENT_RUN_ID} = {filter_value(parent_run_id)} "
            f"and tags.`{TRIAL_ID_TAG}` = {filter_value(trial_id)}"
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
            filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = {filter_value(parent_run_id)}",
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
        clean_tags = self._clean_tags({**provenance_tags(), **tags})
        if parent_run_id is not None:
            clean_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        with self._lock:
            new = parent_run_id in self._created and query not in self._opened_new
            if new:
                self._opened_new.add(query)
        opening = Opening(query, name, clean_tags, new=new)
        if deferrable and (not wait or self._writer.in_outage):
            run_id = self._writer.defer(opening)
        else:
            timeout = self._open_timeout if deferrable else self._sync_timeout
            try:
                run_id, found = self._call(
                    Attempts(self._client, self.experiment_id, opening), timeout=timeout
                )
            except Exception as exc:
                if not deferrable or is_permanent(exc):
                    raise
                _logger.warning("MLflow store unreachable (%s); run %r opened later", exc, name)
                self._writer.note_outage()  # until the writer gets through again
                # The attempt made here may have reached the store: the writer searches first.
                run_id = self._writer.defer(dataclasses.replace(opening, new=False))
            else:
                if found is None:
                    with self._lock:
                        self._created.add(run_id)
                else:
                    with self._lock:
                        state = self._runs.setdefault(run_id, _RunState())
                        state.params.update(found.params)
                        if found.last_step is not None and (
                            state.last_step is None or found.last_step > state.last_step
                        ):
                            state.last_step = found.last_step
                    self._writer.submit(Status(run_id, "RUNNING", None))
                    self.set_tags(run_id, reopening_tags(clean_tags))
        if params:
            self.log_params(run_id, params)
        return run_id

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
            self._writer.submit(Log(run_id, metrics=rows, epoch=True))
        return True

    def last_step(self, run_id: str) -> int | None:
        """The highest epoch step this tracker knows ``run_id`` holds (queued or stored)."""
        with self._lock:
            state = self._runs.get(run_id)
            return None if state is None else state.last_step

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
            self._writer.submit(Log(run_id, metrics=rows))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Queues params (nested mappings become dotted keys); known equal values are skipped.

        MLflow params are immutable, so a key already logged with a different value raises
        :class:`ValueError` here, in the caller, instead of failing later in the writer.
        """
        flat = {
            key: clip(value, MAX_PARAM_VAL_LENGTH) for key, value in flatten_params(params).items()
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
                self._writer.submit(Log(run_id, params=new))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Queues tags; values that are not strings are written as JSON text.

        ``margin_tune.error`` is cut like :meth:`end_run` cuts it, whichever way it is set.
        """
        clean = self._clean_tags(tags)
        if clean:
            self._writer.submit(Log(run_id, tags=clean))

    def log_artifact(
        self,
        run_id: str,
        local_path: str | Path,
        artifact_path: str | None = None,
        *,
        file_name: str | None = None,
    ) -> None:
        """Queues a file for upload, after everything logged before it, as ``file_name``
        (default: its own name).

        The file is copied to a private staging directory at once, so the caller may delete
        or overwrite it; the upload is retried through outages like every other write.
        """
        source = Path(local_path)
        staged = self._stage() / (file_name or source.name)
        shutil.copy2(source, staged)
        self._writer.submit(Artifact(run_id, staged, artifact_path))

    def log_text(self, run_id: str, text: str, file_name: str) -> None:
        """Queues ``text`` as the artifact ``file_name`` of the run (staged and ordered like
        :meth:`log_artifact`)."""
        staged = self._stage() / file_name
        staged.write_text(text, encoding="utf-8")
        self._writer.submit(Artifact(run_id, staged, None))

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> None:
        """Queues a directory's contents for upload, staged and ordered like a single file."""
        staged = self._stage() / "contents"
        shutil.copytree(local_dir, staged)
        self._writer.submit(Artifact(run_id, staged, artifact_path))

    def log_inputs(self, run_id: str, records: Sequence[DatasetRecord]) -> None:
        """Queues ``records`` as the run's dataset inputs (``mlflow.log_input``), in order with
        its other records and retried through outages; logging them again adds nothing."""
        if records:
            self._writer.submit(Inputs(run_id, tuple(records)))

    def log_model(
        self,
        run_id: str,
        local_dir: str | Path,
        name: str,
        *,
        step: int = 0,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Queues a saved MLflow model folder (``mlflow.<flavor>.save_model``'s output) to be
        logged as a model of ``run_id``: staged at once, written in order with the run's other
        records, retried through outages, and made only once per run and ``name``."""
        staged = self._stage() / "model"
        shutil.copytree(local_dir, staged)
        self._writer.submit(ModelUpload(run_id, staged, name, step, self._clean_tags(tags or {})))

    def register_model(
        self,
        name: str,
        run_id: str,
        model_name: str,
        *,
        alias: str,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Register the model ``model_name`` that ``run_id`` logged as a new version of the
        registered model ``name`` (created if missing), point ``alias`` at it; its version.

        Synchronous: everything queued is written first (the model's upload included).
        Idempotent: a model already registered under ``name`` gets no second version.
        """
        if not self.flush():  # the uploads of every model first, however long they take
            raise RuntimeError("the MLflow store did not take the queued records in time")
        found = self._call(
            self._client.search_logged_models,
            [self.experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND name = '{model_name}'",
        )
        # Only a model whose upload finished (a status filter is not honoured by every store).
        ready = [model for model in found if model.status == LoggedModelStatus.READY]
        if not ready:
            raise ValueError(f"run {run_id} has no complete model named {model_name!r}")
        model_id = max(ready, key=lambda model: model.creation_timestamp or 0).model_id
        try:
            self._call(self._client.create_registered_model, name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # A version of this run's model already registered (a resumed command, a retry whose
        # answer was lost) is the one: registering it again would add a version.
        existing = [
            version
            for version in self._call(
                self._client.search_model_versions, f"name = '{name}' AND run_id = '{run_id}'"
            )
            if (version.source or "") == f"models:/{model_id}"
        ]
        if existing:
            version = min(existing, key=lambda found: int(found.version))
        else:
            with as_global_store(self.tracking_uri):
                version = self._create_version(name, run_id, model_id, tags or {})
        self._call(self._client.set_registered_model_alias, name, alias, version.version)
        return str(version.version)

    def _create_version(
        self, name: str, run_id: str, model_id: str, tags: Mapping[str, Any]
    ) -> Any:
        return self._call(
            self._client.create_model_version,
            name,
            source=f"models:/{model_id}",
            run_id=run_id,
            model_id=model_id,
            tags=self._clean_tags(tags),
        )

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
            self.set_tags(run_id, {ERROR_TAG: error_text(error)})
        self._writer.submit(Status(run_id, status, int(time.time() * 1000)))

    # ------------------------------------------------------------------------ lifecycle

    @property
    def pending(self) -> int:
        """Queued operations not yet written (or given up as invalid)."""
        return self._writer.pending

    @property
    def dropped(self) -> int:
        """Records the store rejected as invalid, so they were given up; each was logged."""
        return self._writer.dropped

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything queued before this call is written.

        Returns False, with a warning naming how many operations are still pending, if
        ``timeout`` seconds pass first (for example while the store is down).
        """
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flushes, then stops the writer; returns False if records had to be abandoned.

        With ``timeout`` None this waits for the store however long it is down, which is the
        only way to keep every record; a finite timeout trades that for a bounded exit.
        """
        if self._writer.closed:
            return True
        flushed = self._writer.close(timeout)
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
        check_name(kind, key)
        self._valid_keys.add((kind, key))

    def _clean_tags(self, tags: Mapping[str, Any]) -> dict[str, str]:
        for key in tags:
            self._check_key("tag", key)
        return {key: tag_text(key, value) for key, value in tags.items()}

    def _stage(self) -> Path:
        """Makes a fresh slot in the staging directory that holds artifacts until uploaded."""
        with self._lock:
            if self._writer.closed:
                raise RuntimeError("the MLflow tracker is closed")
            if self._staging is None:
                self._staging = Path(tempfile.mkdtemp(prefix="margin-tune-artifacts-"))
            slot = self._staging / str(next(self._staged_count))
        slot.mkdir()
        return slot

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
                if is_permanent(exc) or time.monotonic() + delay > deadline:
                    raise
                _logger.warning("MLflow store unreachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, self._retry_max)
