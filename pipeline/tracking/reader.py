"""Reading an experiment back: what ``report`` (and any script) sees of what the tracker wrote.

One paged search reads every run of an experiment; :class:`ExperimentRuns` then indexes them by
role (sweep and comparison parents, their trials, their re-training runs), so each table is a
view of runs already in memory. Nothing here writes, and nothing needs torch or Ray.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from margin_tune.pipeline.tracking.store import resolve_tracking_uri, sqlite_path
from margin_tune.pipeline.tracking.vocabulary import (
    FINAL_STAGE,
    KIND_TAG,
    STAGE_TAG,
    SWEEP_ID_TAG,
    SWEEP_KIND,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.errors import ConfigError

_PAGE = 1000
_MAX_LISTED = 20


def open_client(tracking_uri: str | None) -> MlflowClient:
    """A client on the store, refusing a SQLite file or a file-store folder that does not exist.

    MLflow would silently create an empty database (or ``mlruns`` folder) at a mistyped path, and
    a report of an empty store hides the typo, so the path is checked before any client touches
    it; a store MLflow itself refuses to open is reported as bad input too.
    """
    uri = resolve_tracking_uri(tracking_uri)
    database = sqlite_path(uri)
    if database is not None:
        if not database.is_file():
            raise ConfigError("--tracking-uri", f"no MLflow database at {database} ({uri})")
    elif not uri.startswith("sqlite:"):
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):  # a file store: MLflow would create the folder
            folder = Path(parsed.path if parsed.scheme else uri)
            if not folder.is_dir():
                raise ConfigError("--tracking-uri", f"no MLflow file store at {folder} ({uri})")
    try:
        return MlflowClient(tracking_uri=uri)
    except MlflowException as error:  # e.g. a file store, refused by MLflow 3 by default
        message = " ".join(str(error.message).split())
        raise ConfigError("--tracking-uri", f"cannot open {uri}: {message}") from None


class ExperimentRuns:
    """Every active run of one experiment, read once and indexed by role.

    One paged search costs far less than a query per sweep, and every table of a report is a
    different view of the same runs.
    """

    def __init__(self, client: MlflowClient, experiment: str) -> None:
        self.client = client
        self.experiment = experiment
        self.runs = _search_all(client, _experiment_id(client, experiment))
        self.by_id = {run.info.run_id: run for run in self.runs}
        self.parents = [run for run in self.runs if SWEEP_ID_TAG in run.data.tags]

    def children(self, parent: Run) -> list[Run]:
        return [run for run in self.runs if parent_id(run) == parent.info.run_id]

    def trials(self, sweep: Run) -> list[Run]:
        """The sweep's tuning trials (a final run is never one)."""
        return [
            run
            for run in self.children(sweep)
            if TRIAL_ID_TAG in run.data.tags and run.data.tags.get(STAGE_TAG) != FINAL_STAGE
        ]

    def sweeps(self, comparison: Run | None = None) -> list[Run]:
        """Sweep parents, all of them or those nested under ``comparison``."""
        return [
            run
            for run in self.parents
            if run_kind(run) == SWEEP_KIND
            and (comparison is None or parent_id(run) == comparison.info.run_id)
        ]

    def find(self, key: str, *, field: str = "--sweep") -> Run:
        """The sweep or comparison named by sweep id or run id, exactly or by unique prefix;
        ``field`` is the option an error names."""
        exact = [run for run in self.parents if key in run_ids(run)]
        matches = exact or [
            run for run in self.parents if any(i.startswith(key) for i in run_ids(run))
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = listed(
                f"{sweep_id_of(r)} ({run_kind(r)} {r.info.run_name})" for r in self.parents
            )
            raise ConfigError(
                field, f"no sweep or comparison {key!r} in {self.experiment!r}; known: {known}"
            )
        raise ConfigError(
            field, f"{key!r} is ambiguous; it matches {listed(sweep_id_of(r) for r in matches)}"
        )


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments())
        raise ConfigError("--experiment", f"no experiment {name!r}; existing: {listed(names)}")
    return experiment.experiment_id


def _search_all(client: MlflowClient, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def parent_id(run: Run) -> str:
    """The run a run is nested under; empty at the top level."""
    return run.data.tags.get(MLFLOW_PARENT_RUN_ID, "")


def run_kind(run: Run) -> str:
    """What a parent run is (``sweep``, ``comparison``, ``ablation``); untagged: a sweep."""
    return run.data.tags.get(KIND_TAG, SWEEP_KIND)


def sweep_id_of(run: Run) -> str:
    """The sweep (or comparison, or ablation) id of a parent run."""
    return run.data.tags[SWEEP_ID_TAG]


def run_ids(run: Run) -> tuple[str, str]:
    """The two ids a user may name a parent run by: its sweep id and its MLflow run id."""
    return sweep_id_of(run), run.info.run_id


def listed(items: Iterable[str]) -> str:
    """Names for a one-line error: all of them, or the first few and how many more."""
    names = list(items)
    if not names:
        return "(none)"
    shown = ", ".join(names[:_MAX_LISTED])
    extra = len(names) - _MAX_LISTED
    return f"{shown} and {extra} more" if extra > 0 else shown


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """Artifact downloads without MLflow's progress bars (one per file, on stderr), which would
    bury a command's own output; the setting is put back after."""
    saved = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = saved


#: MLflow's switch for its download progress bars, read at each download.
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
