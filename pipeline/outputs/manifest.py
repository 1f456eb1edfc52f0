"""The manifest an output directory keeps: what command made it, so ``resume`` can redo it.

It holds plain data only (the resolved config, the options, the sweep id); the search space is
copied beside it, so a resumed sweep never depends on files outside its directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from margin_tune import __version__
from margin_tune.pipeline.runtime.secrets import CREDENTIAL_VARIABLES, redact_uri, with_credentials
from margin_tune.trainables.errors import ConfigError

MANIFEST_FILE = "margin-tune.json"
#: 2: the margin_tune namespace (0.2.0), and the version that wrote the manifest. Format 1 came
#: before it: its Ray Tune state pickles modules by their old top-level names (``pipeline.…``).
FORMAT_VERSION = 2
BEFORE_NAMESPACE = 1
#: What ``resume`` reads from the manifest of each command that writes one.
_REQUIRED: dict[str, dict[str, type]] = {
    "tune": {"name": str, "space_name": str, "sweep_id": str, "base": dict, "options": dict},
    "compare": {
        "comparison_id": str,
        "sweep_ids": dict,
        "spec": dict,
        "options": dict,
        "indicative": bool,
    },
    "ablate": {"ablation_id": str, "grid_name": str, "seeds": int, "base": dict, "options": dict},
}
_JSON_NAMES: dict[type, str] = {str: "string", dict: "object", bool: "boolean", int: "integer"}


def write_manifest(out: Path, command: str, data: dict[str, Any]) -> None:
    """Write the manifest; store URIs in its options are saved without their passwords."""
    options = dict(data.get("options", {}))
    for key in CREDENTIAL_VARIABLES:
        if isinstance(options.get(key), str):
            options[key] = redact_uri(options[key])
    content = {"format": FORMAT_VERSION, "margin_tune_version": __version__, "command": command}
    content.update(data)
    if "options" in data:
        content["options"] = options
    (out / MANIFEST_FILE).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def manifest_options(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's options, with store credentials restored from the environment."""
    options = dict(manifest["options"])
    for key in CREDENTIAL_VARIABLES:
        options[key] = with_credentials(options.get(key), key)
    return options


def read_manifest(out: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The manifest of ``out``, checked to come from one of the ``allowed`` commands."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(
            "DIR",
            f"{out} has no {MANIFEST_FILE}: not an output directory of margin-tune "
            f"{'/'.join(allowed)}",
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError("DIR", f"cannot read {path}: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError("DIR", f"{path} must hold a JSON object, got {type(content).__name__}")
    if content.get("format") == BEFORE_NAMESPACE:
        raise ConfigError(
            "DIR",
            f"{out} was written by margin-tune before 0.2.0, whose modules were renamed into the "
            "margin_tune namespace; its Ray Tune state names the old modules, so it cannot be "
            "resumed or synced. Its MLflow runs and tables stay readable (margin-tune report); "
            "start a new run to continue",
        )
    if content.get("format") != FORMAT_VERSION:
        raise ConfigError(
            "DIR", f"{path} has format {content.get('format')!r}, expected {FORMAT_VERSION}"
        )
    command = content.get("command")
    if command not in allowed or command not in _REQUIRED:
        raise ConfigError(
            "DIR", f"{path} was written by command {command!r}; allowed: {', '.join(allowed)}"
        )
    for key, kind in _REQUIRED[command].items():
        if key not in content:
            raise ConfigError(
                "DIR", f"{path} is missing {key!r}: not a complete {command} manifest"
            )
        value = content[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                "DIR",
                f"{path}: {key!r} must be a JSON {_JSON_NAMES[kind]}, got {type(value).__name__}",
            )
    return content
