"""Where the MLflow store is, and whether it can be written to: what every command checks first.

Nothing here writes a run; :mod:`~margin_tune.pipeline.tracking.tracker` writes and
:mod:`~margin_tune.pipeline.tracking.reader` reads, both on a store resolved and checked here.
A store given by its URI is resolved and checked without importing MLflow (1.2 s here), which
a sweep imports while Ray starts (:mod:`~margin_tune.pipeline.sweep.plan`); MLflow is asked
only for its own default.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from margin_tune.pipeline.runtime.secrets import redact_uri
from margin_tune.trainables.errors import ConfigError

DEFAULT_EXPERIMENT = "margin-tune"

# MLflow's HTTP client retries a refused connection 7 times with doubling backoff (minutes) by
# default; our own writer retries forever, so a single attempt with a short timeout is wanted.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # MLflow prints "View run … at: <tracking URI>" for every ended run of a server store:
    # hundreds of lines per sweep, and the URI's credentials with them.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def fail_fast_over_http(uri: str) -> None:
    """Against an HTTP store, one attempt per request (unless the user set otherwise): the
    writer's own retries then notice an outage at once instead of after minutes."""
    if uri.startswith(("http://", "https://")):
        for name, value in HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(name, value)


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """Returns the explicit URI, else ``MLFLOW_TRACKING_URI``, else MLflow's default.

    A relative SQLite path (MLflow's default is ``sqlite:///mlflow.db``) is made absolute here,
    because Ray Tune moves each trial into its own working directory and the same relative URI
    would then name a different, empty database.
    """
    if tracking_uri:
        uri = tracking_uri
    else:
        import mlflow

        uri = mlflow.get_tracking_uri()
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


_GLOBAL_STORE_LOCK = threading.Lock()


@contextlib.contextmanager
def as_global_store(uri: str) -> Iterator[None]:
    """Make ``uri`` MLflow's process-wide tracking URI for the block, then put back what was.

    MLflow's SQL model registry resolves a version's ``models:/<id>`` source with a client of
    the *global* store (``MlflowClient()``, a TODO in its code), not the store it registers in;
    a tracker on another store would see its own model "not found". ``mlflow.set_tracking_uri``
    also sets ``MLFLOW_TRACKING_URI``: the variable is restored exactly as it was.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    with _GLOBAL_STORE_LOCK:
        previous_uri = utils._tracking_uri
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            # None is what "unset" is in MLflow's own code, beyond its annotation.
            mlflow.set_tracking_uri(previous_uri)  # type: ignore[arg-type]
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env
