"""Bridges Ray Tune's trial events to the tracker, in the driver process.

Trials only call ``tune.report``; this callback turns what the driver receives into one MLflow
child run per trial. Logging is queued by the tracker, so neither trials nor Tune's event loop
wait on the store, and a trial that starts while the store is down gets its run once the store
is back (:meth:`Tracker.child_run` never raises for an unreachable store). After a sweep, and in
``margin-tune sync``, :func:`sync_results` makes the runs hold what Ray Tune's results hold.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ray.air.constants import EXPR_RESULT_FILE
from ray.tune import Callback, Result

from margin_tune.pipeline.search.space import overlay
from margin_tune.pipeline.sweep.inputs import DatasetInputs
from margin_tune.pipeline.tracking.records import flatten_params
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    CELL_TAG,
    DATASET_TAG,
    ERROR_TAG,
    FINAL_STAGE,
    GRID_POINT_TAGS,
    SCHEDULER_TAG,
    SEED_TAG,
    STAGE_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.metric_names import (
    COLLAPSED,
    EPOCH,
    EPOCH_COLUMNS,
    TEST_PREFIX,
    is_recall_at,
)
from margin_tune.trainables.parts import config_from_dict
from margin_tune.trainables.schedulers import SCHEDULERS
from margin_tune.trainables.yaml_io import dump_yaml


def run_name(config: Config, *, seed: bool = False) -> str:
    """Scheduler and its key parameters, e.g. ``dams μ0=0.20 target=0.95 step=0.050 lr=1e-03``.

    The parameters shown, and their short names, are the scheduler's ``labels``. A pair loss
    leads with its name and balance (``contrastive λ=0.5 dams …``); ``seed`` appends the
    training seed, what tells a method's re-trainings apart.
    """
    margin, loss = config.margin, config.loss
    parts = [] if loss.name == "triplet" else [loss.name, f"λ={loss.balance:.3g}"]
    if loss.name == "ntxent":
        parts.append(f"τ={loss.temperature:.3g}")
    parts.append(margin.scheduler)
    scheduler = SCHEDULERS.get(margin.scheduler)
    for name in scheduler.parameters:
        if name in scheduler.labels:
            parts.append(f"{scheduler.labels[name]}={getattr(margin, name):.3g}")
    parts.append(f"lr={config.train.lr:.0e}")
    if seed:
        parts.append(f"seed={config.seed}")
    return " ".join(parts)


def trial_run_name(config: Config, tags: Mapping[str, str]) -> str:
    """What a trial's MLflow run, and its Ray Tune trial, are called.

    An ablation's trial is named by its cell, what tells it apart from the other cells; a
    re-training by its method's config and seed; a tuning trial by its config.
    """
    if CELL_TAG in tags:
        return f"{tags[CELL_TAG]} seed={config.seed}"
    return run_name(config, seed=tags.get(STAGE_TAG) == FINAL_STAGE)


class TrialNames:
    """Ray Tune's names for its trials (``trial_name_creator``) and their folders
    (``trial_dirname_creator``), after the trials' MLflow run names.

    Tune's own (``run_tune_trial_2368aefb``) say nothing beside ``dams μ0=0.297 target=0.907 …``
    in MLflow. A folder takes an ASCII slug of the name plus the trial id: μ, spaces and ``=``
    are not safe in every path, and names alone are not unique. Plain data, so Tune can pickle
    it for ``resume``.
    """

    def __init__(self, resolve_config: Callable[[Any], Config], tags: Mapping[str, str]) -> None:
        self.resolve_config = resolve_config
        self.tags = dict(tags)
        self._names: dict[str, str] = {}  # by trial id: Tune asks for the name, then the folder

    def name(self, trial: Any) -> str:
        if trial.trial_id not in self._names:
            tags = {**grid_point_tags(trial.config), **self.tags}
            config = self.resolve_config(trial.config)
            self._names[trial.trial_id] = trial_run_name(config, tags)
        return self._names[trial.trial_id]

    def dirname(self, trial: Any) -> str:
        return f"{path_slug(self.name(trial))}_{trial.trial_id}"

    def __getstate__(self) -> dict[str, Any]:
        """Without the names already given: a cache, rebuilt from each trial's config.

        Tune pickles both creators into every trial's saved state, when the trial is made:
        with the cache, trial *k* carried the names of the *k* − 1 before it, twice, and the
        experiment state Tune rewrites every second grew with the square of the trials
        (16 kB a creator by trial 500, against 1.5 kB without).
        """
        return {"resolve_config": self.resolve_config, "tags": self.tags, "_names": {}}


#: How long a trial folder's slug may be, before its trial id (well under any path limit).
MAX_SLUG = 80


def path_slug(name: str) -> str:
    """``dams μ0=0.297 lr=1e-03`` → ``dams_mu0-0.297_lr-1e-03``: letters, digits, ``.``, ``-``."""
    ascii_name = unicodedata.normalize("NFKD", name.replace("μ", "mu").replace("λ", "lambda"))
    ascii_name = ascii_name.replace("τ", "tau").encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", ascii_name.replace("=", "-")).strip("_.")
    return slug[:MAX_SLUG].rstrip("_.") or "trial"


def trial_status(config: Config, last: dict[str, Any] | None, failed: bool) -> str:
    """completed / early_stopped / failed / collapsed, from what the trial last reported."""
    if failed:
        return "failed"
    if last is None:
        return "early_stopped"
    if last.get(COLLAPSED):
        return "collapsed"
    return "completed" if int(last.get(EPOCH, 0)) >= config.train.epochs else "early_stopped"


_BOUND_TRACKER: Tracker | None = None


@contextmanager
def bind_tracker(tracker: Tracker) -> Iterator[None]:
    """Make ``tracker`` the one every TrackingCallback of this process logs through.

    Tune pickles its callbacks into the experiment state and unpickles them on
    ``Tuner.restore``; a live tracker (a thread and a store connection) cannot travel that way,
    so callbacks hold only plain data and find the tracker here while ``fit`` runs.
    """
    global _BOUND_TRACKER
    previous, _BOUND_TRACKER = _BOUND_TRACKER, tracker
    try:
        yield
    finally:
        _BOUND_TRACKER = previous


class SearchedConfig:
    """A sweep trial's config: the searched values laid over the sweep's base.

    Both of a sweep's callbacks (the MLflow one and the progress lines) ask for each trial's
    config; the last few are kept, so it is built and validated once per trial.
    """

    KEEP = 64

    def __init__(self, base: Config) -> None:
        # Plain data: Tune pickles this with the experiment state for ``resume``.
        self.base = base.to_dict()
        self._built: dict[str, Config] = {}

    def __call__(self, params: Mapping[str, Any]) -> Config:
        key = repr(sorted(params.items()))
        if key not in self._built:
            if len(self._built) >= self.KEEP:
                del self._built[next(iter(self._built))]
            self._built[key] = config_from_dict(overlay(self.base, params))
        return self._built[key]

    def __getstate__(self) -> dict[str, Any]:
        return {"base": self.base}  # the configs it built are not state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.base, self._built = state["base"], {}


class TrackingCallback(Callback):
    """One nested MLflow child run per Tune trial, metrics at ``step=epoch``.

    ``resolve_config`` turns a trial's Tune config into the trial config it runs (for params,
    tags and the run name); ``tags`` are added to every child run; ``run_key`` names the Tune
    config keys that identify a trial's run (see :func:`run_identity`); ``inputs`` are the
    datasets each run logs (built once, in the driver).
    """

    def __init__(
        self,
        parent_run_id: str,
        resolve_config: Callable[[Mapping[str, Any]], Config],
        tags: Mapping[str, str] | None = None,
        run_key: tuple[str, ...] = (),
        inputs: DatasetInputs | None = None,
    ) -> None:
        self.parent_run_id = parent_run_id
        self.inputs = inputs
        self.resolve_config = resolve_config
        self.tags = dict(tags or {})
        self.run_key = run_key
        self.run_ids: dict[str, str] = {}
        self.configs: dict[str, Config] = {}
        self.last: dict[str, dict[str, Any]] = {}

    @property
    def tracker(self) -> Tracker:
        if _BOUND_TRACKER is None:
            raise RuntimeError("TrackingCallback used outside bind_tracker(...)")
        return _BOUND_TRACKER

    def _config(self, trial: Any) -> Config:
        if trial.trial_id not in self.configs:
            self.configs[trial.trial_id] = self.resolve_config(trial.config)
        return self.configs[trial.trial_id]

    def _ensure_run(self, trial: Any) -> str:
        if trial.trial_id not in self.run_ids:
            self.run_ids[trial.trial_id] = open_trial_run(
                self.tracker,
                self.parent_run_id,
                run_identity(trial.trial_id, trial.config, self.run_key),
                self._config(trial),
                {**grid_point_tags(trial.config), **self.tags, STATUS_TAG: "running"},
                wait=False,  # Tune's event loop must not wait on the store
                inputs=self.inputs,
            )
        return self.run_ids[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ensure_run(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        run_id = self._ensure_run(trial)
        step = int(result["epoch"])
        held = self.tracker.last_step(run_id) or 0
        if step > held + 1:
            self._fill_gap(trial, run_id, after=held, before=step)
        self.tracker.log_epoch(run_id, epoch_metrics(result), step=step)
        self.last[trial.trial_id] = result

    def _fill_gap(self, trial: Any, run_id: str, after: int, before: int) -> None:
        """Epochs ``after < epoch < before`` of this trial, from Tune's ``result.json``.

        A trial restored by ``resume`` goes on from its last checkpoint. The epochs before it
        were reported to the driver that was killed, whose queue of MLflow records died with
        it: the last ones may never have reached the store, and a run records each epoch
        once, in order (later steps would shut them out for good). Tune's ``result.json`` was
        written as each result came in, so it still holds them; they are logged first. Steps
        the store already holds are dropped as usual (a run reopened without waiting for the
        store learns them from the writer).
        """
        if not trial.local_path:  # not one of Tune's trials on this machine: nothing to read
            return
        try:
            lines = (
                Path(trial.local_path, EXPR_RESULT_FILE).read_text(encoding="utf-8").splitlines()
            )
        except OSError:
            return
        rows: dict[int, dict[str, Any]] = {}
        for line in lines:
            try:
                row = json.loads(line)
                epoch = int(row["epoch"])
            except (ValueError, TypeError, KeyError):
                continue  # a line cut short by the kill, or one without an epoch
            if after < epoch < before:
                rows.setdefault(epoch, row)  # a replayed epoch: what was reported first
        for epoch in sorted(rows):
            self.tracker.log_epoch(run_id, epoch_metrics(rows[epoch]), step=epoch)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error=None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = getattr(trial, "error_file", None)
        message = read_error(error) if error else "trial failed (no error file)"
        self._finish(trial, error=message)

    def _finish(self, trial: Any, error: str | None) -> None:
        run_id = self._ensure_run(trial)
        status = trial_status(self._config(trial), self.last.get(trial.trial_id), error is not None)
        end_trial_run(self.tracker, run_id, status, error)


def run_identity(trial_id: str, params: Mapping[str, Any], run_key: tuple[str, ...]) -> str:
    """What a trial's run is found by (its ``margin_tune.trial_id`` tag): Tune's trial id, or
    the values of the ``run_key`` config keys, e.g. ``method=dams,seed=1``.

    A grid point (a comparison's re-training) that a crash kept out of Tune's last snapshot is
    created again on resume under a new trial id; keyed by its values it re-opens its run
    instead of leaving a second one.
    """
    if not run_key:
        return trial_id
    return ",".join(f"{key}={params[key]}" for key in run_key)


def grid_point_tags(params: Mapping[str, Any]) -> dict[str, str]:
    """The ``split``, ``method`` or ``cell`` of a grid trial, as tags."""
    return {tag: str(params[key]) for key, tag in GRID_POINT_TAGS.items() if key in params}


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """What a trial run logs of one reported result: the epoch columns and any test metric.

    ``epoch`` is logged too, though it is also the step: its latest value is what an MLflow
    search returns, so a report knows how far each trial got without one history request per
    trial.
    """
    return {
        name: float(value)
        for name, value in result.items()
        if (name in EPOCH_COLUMNS or name.startswith(TEST_PREFIX) or is_recall_at(name))
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


def reported_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """:func:`epoch_metrics` of one row of a trial's results table, without what the row only
    holds as a gap: the table has a column for every key any epoch reported, so the epochs
    before the last hold NaN for the test metrics reported at the last. Every epoch reports
    every epoch column, NaN included (an epoch without a valid triplet has no easy ratio)."""
    return {
        name: value
        for name, value in epoch_metrics(row).items()
        if name in EPOCH_COLUMNS or not math.isnan(value)
    }


def open_trial_run(
    tracker: Tracker,
    parent_run_id: str,
    trial_id: str,
    config: Config,
    tags: Mapping[str, str],
    *,
    wait: bool = True,
    inputs: DatasetInputs | None = None,
) -> str:
    """The trial's child run, created or re-opened (found by its trial id under the parent),
    with its resolved config and, given ``inputs``, its datasets."""
    name = trial_run_name(config, tags)
    run_id = tracker.child_run(
        parent_run_id,
        trial_id,
        name=name,
        params=flatten_params(config.to_dict()),
        tags={
            TRIAL_ID_TAG: trial_id,
            SCHEDULER_TAG: config.margin.scheduler,
            DATASET_TAG: config.dataset.name,
            SEED_TAG: str(config.seed),
            **tags,
        },
        wait=wait,
    )
    # The whole resolved config, as the file `train --config` takes: the run's provenance.
    tracker.log_text(run_id, dump_yaml(config.to_dict()), CONFIG_ARTIFACT)
    if inputs is not None:
        tracker.log_inputs(run_id, inputs.for_config(config))
    return run_id


#: Each trial run's resolved config, as an artifact.
CONFIG_ARTIFACT = "config.yaml"

#: The status of a trial a signal stopped: neither completed nor early-stopped; ``resume``
#: continues it from its last checkpoint.
INTERRUPTED = "interrupted"


def end_trial_run(tracker: Tracker, run_id: str, status: str, error: str | None) -> None:
    tags = {STATUS_TAG: status}
    if error is not None:
        tags[ERROR_TAG] = error
    tracker.set_tags(run_id, tags)
    if error is not None:
        tracker.end_run(run_id, "FAILED")
    else:
        tracker.end_run(run_id, "KILLED" if status == INTERRUPTED else "FINISHED")


def sync_trial_run(
    tracker: Tracker,
    parent_run_id: str,
    trial_id: str,
    config: Config,
    history: list[dict[str, Any]],
    status: str,
    error: str | None,
    tags: Mapping[str, str] | None = None,
    inputs: DatasetInputs | None = None,
) -> str:
    """Make a trial's run hold what Ray Tune holds for it; idempotent.

    The driver's queue dies with the driver: a trial that ended, or epochs reported, just
    before a crash can be in Tune's experiment state but not in MLflow, and Tune does not
    replay events of trials that had already ended. Steps the run already holds are skipped.
    A run that is missing is created with the tags, params and parent the live path gives.
    """
    run_id = open_trial_run(tracker, parent_run_id, trial_id, config, tags or {}, inputs=inputs)
    for row in history:
        tracker.log_epoch(run_id, reported_metrics(row), step=int(row["epoch"]))
    end_trial_run(tracker, run_id, status, error)
    return run_id


def read_error(path: str) -> str:
    """The end of a trial's error file (what Tune wrote when the trial raised)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()[-5000:]
    except OSError:
        return f"trial failed; error file {path} unreadable"


def first_line(error: BaseException | str) -> str:
    """The line of an error that says what went wrong: the last non-empty one of its text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(error).__name__


@dataclass
class SyncedTrial:
    """One trial of a Ray Tune experiment, as its results say and its run now holds."""

    trial_id: str
    result: Result
    config: Config
    status: str
    run_id: str

    @property
    def history(self) -> pd.DataFrame | None:
        """One row per reported epoch, or None if the trial reported nothing."""
        history = self.result.metrics_dataframe
        return None if history is None or history.empty else history


def sync_results(
    tracker: Tracker,
    parent_run_id: str,
    results: Iterable[Result],
    resolve_config: Callable[[Mapping[str, Any]], Config],
    tags: Mapping[str, str] | None = None,
    run_key: tuple[str, ...] = (),
    interrupted: Iterable[str] = (),
    inputs: DatasetInputs | None = None,
) -> list[SyncedTrial]:
    """Make the trial runs under ``parent_run_id`` hold what Ray Tune's results hold.

    ``interrupted``: Tune trial ids a signal stopped; their runs end KILLED with status
    ``interrupted``, whatever epoch they reached.

    A run that is missing, still RUNNING or ended with another status than the results give is
    written again from the trial's reported history (idempotent: steps already held are
    skipped); runs that match are not touched, so a second call writes nothing. Runs of trials
    the results no longer have (a trial that lived only in a killed driver) are kept but ended
    KILLED with ``trial_status=abandoned``. ``tags`` (and a trial's ``method``) are given to
    runs created here, as the live :class:`TrackingCallback` gives them, and so are ``inputs``
    to runs written here; ``run_key`` must be the callback's.
    """
    tracker.flush()
    stored = tracker.child_runs(parent_run_id)
    stopped = set(interrupted)
    synced = []
    for result in results:
        params = result.config or {}
        tune_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        trial_id = run_identity(tune_id, params, run_key)
        config = resolve_config(params)
        last = result.metrics or None
        status = trial_status(config, last, result.error is not None)
        if tune_id in stopped and result.error is None:
            status = INTERRUPTED
        known = stored.get(trial_id)
        if known is None or known.status == "RUNNING" or known.trial_status != status:
            history = result.metrics_dataframe
            run_id = sync_trial_run(
                tracker,
                parent_run_id,
                trial_id,
                config,
                history.to_dict("records") if history is not None else [],
                status,
                str(result.error) if result.error is not None else None,
                {**grid_point_tags(params), **(tags or {})},
                inputs,
            )
        else:
            run_id = known.run_id
        synced.append(SyncedTrial(trial_id, result, config, status, run_id))
    present = {trial.trial_id for trial in synced}
    for trial_id, run in stored.items():
        if trial_id not in present and run.trial_status != "abandoned":
            tracker.set_tags(run.run_id, {STATUS_TAG: "abandoned"})
            tracker.end_run(run.run_id, "KILLED")
    return synced
