"""What a value becomes on its way into MLflow: dotted params, clipped text, checked names,
dataset inputs.

MLflow refuses a bad name only when the batch holding it is written, in the background writer,
where the error is lost to the caller and costs the batch's other records. These checks run in
the caller instead, with MLflow's own rules and limits, so a bad name fails where it was
written.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from mlflow.utils.validation import (
    MAX_DATASET_DIGEST_SIZE,
    MAX_DATASET_NAME_SIZE,
    MAX_DATASET_PROFILE_SIZE,
    MAX_DATASET_SCHEMA_SIZE,
    MAX_DATASET_SOURCE_SIZE,
    MAX_ENTITY_KEY_LENGTH,
    MAX_INPUT_TAG_VALUE_SIZE,
    MAX_TAG_VAL_LENGTH,
)

from margin_tune.pipeline.tracking.vocabulary import ERROR_TAG

MAX_ERROR_CHARS = 5000
TRUNCATED = "...[truncated]"
#: What MLflow allows in a metric, param or tag name on every platform: letters, digits,
#: underscores, periods, dashes, spaces and slashes (POSIX stores also allow colons; a store
#: may be read from Windows, so they are not used).
_NAME = re.compile(r"[/\w.\- ]+")

_logger = logging.getLogger(__name__)


def check_name(kind: str, name: str) -> None:
    """Refuses a ``kind`` (metric, param, tag) name that MLflow would reject when writing it.

    Raises:
        ValueError: naming the rule the name breaks.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"Invalid value {name!r} for {kind} name: names may only contain letters, digits, "
            "underscores (_), dashes (-), periods (.), spaces ( ) and slashes (/)"
        )
    normal = posixpath.normpath(name)
    if normal != name or normal == "." or normal.startswith(("..", "/")):
        raise ValueError(
            f"Invalid value {name!r} for {kind} name: MLflow may store names as paths, and "
            f"this one would resolve to {normal!r}"
        )
    if len(name) > MAX_ENTITY_KEY_LENGTH:
        raise ValueError(f"{kind} name longer than {MAX_ENTITY_KEY_LENGTH}: {name[:80]}...")


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
            flat[name] = to_text(value)


def to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return json.dumps(dict(value), default=str)
    if value is None or isinstance(value, bool | int | float | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def clip(value: str, limit: int) -> str:
    """Cuts a value to MLflow's length limit, marking the cut so nobody mistakes it for whole."""
    if len(value) <= limit:
        return value
    _logger.warning("value of %d characters cut to MLflow's limit of %d", len(value), limit)
    return value[: limit - len(TRUNCATED)] + TRUNCATED


def error_text(error: str | BaseException) -> str:
    """Keeps the end of the error, where a traceback names the exception that ended the run."""
    if isinstance(error, BaseException):
        error = "".join(traceback.format_exception(error))
    if len(error) <= MAX_ERROR_CHARS:
        return error
    return TRUNCATED + error[-(MAX_ERROR_CHARS - len(TRUNCATED)) :]


def tag_text(key: str, value: Any) -> str:
    """Writes a tag value as text within MLflow's limit; an error keeps its informative end."""
    if key == ERROR_TAG:
        return error_text(value if isinstance(value, BaseException) else to_text(value))
    return clip(to_text(value), MAX_TAG_VAL_LENGTH)


def filter_value(value: str) -> str:
    """Quotes a value for an MLflow filter string, which has no escape for quotes."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"an id may not contain both kinds of quote: {value!r}")


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    """One MLflow dataset input of a run: what ``mlflow.log_input`` sends, as plain strings.

    ``context`` is the input's ``mlflow.data.context`` tag (``training``, ``validation``,
    ``test``), what the UI's Dataset column shows beside ``name`` and ``digest``. Plain data,
    so it travels in Tune's pickled callbacks; checked against MLflow's limits here, where a
    bad value fails in the caller and not in the background writer.
    """

    name: str
    digest: str
    source_type: str
    source: str
    schema: str
    profile: str
    context: str

    def __post_init__(self) -> None:
        for field_name, value, limit in (
            ("name", self.name, MAX_DATASET_NAME_SIZE),
            ("digest", self.digest, MAX_DATASET_DIGEST_SIZE),
            ("source", self.source, MAX_DATASET_SOURCE_SIZE),
            ("schema", self.schema, MAX_DATASET_SCHEMA_SIZE),
            ("profile", self.profile, MAX_DATASET_PROFILE_SIZE),
            ("context", self.context, MAX_INPUT_TAG_VALUE_SIZE),
        ):
            if not value or len(value) > limit:
                raise ValueError(
                    f"dataset input {field_name} must be 1..{limit} characters, got {len(value)}"
                )

    def to_mlflow(self) -> DatasetInput:
        """The entity ``MlflowClient.log_inputs`` takes."""
        return DatasetInput(
            Dataset(
                name=self.name,
                digest=self.digest,
                source_type=self.source_type,
                source=self.source,
                schema=self.schema,
                profile=self.profile,
            ),
            tags=[InputTag(MLFLOW_DATASET_CONTEXT, self.context)],
        )
