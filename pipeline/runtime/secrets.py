"""Credentials in store URIs: shown and saved redacted, kept only in the process environment.

A tracking URI such as ``http://user:pw@host`` or ``postgresql://user:pw@db/mlflow`` is
printed, logged and written to an output directory's manifest as ``http://user:***@host``. A
``resume`` or ``sync`` of that directory takes the real URI from ``MLFLOW_TRACKING_URI`` (or
``MARGIN_TUNE_OPTUNA_STORAGE`` for an Optuna storage), which must name the same store.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from margin_tune.trainables.errors import ConfigError

REDACTED = "***"
#: Where a resumed command finds the credentials its manifest does not keep, per option.
CREDENTIAL_VARIABLES = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "storage": "MARGIN_TUNE_OPTUNA_STORAGE",
}


def redact_uri(uri: str) -> str:
    """``uri`` with its password replaced by ``***``: what may be printed, logged or saved."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return uri
    if password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:{REDACTED}@" if parts.username else f":{REDACTED}@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def is_redacted(uri: str) -> bool:
    return redact_uri(uri) == uri and f":{REDACTED}@" in uri


def with_credentials(saved: str | None, option: str) -> str | None:
    """The URI a manifest saved, with its credentials restored from the environment.

    Raises a ConfigError naming the variable to set when the saved URI was redacted and the
    environment holds no URI that redacts to it.
    """
    if saved is None or not is_redacted(saved):
        return saved
    variable = CREDENTIAL_VARIABLES[option]
    candidate = os.environ.get(variable, "")
    if candidate and redact_uri(candidate) == saved:
        return candidate
    raise ConfigError(
        variable,
        f"this directory's store {saved} needs its password, which is never saved: set "
        f"{variable} to that URI with its credentials",
    )
