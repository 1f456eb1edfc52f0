"""The manifest an output directory keeps: what command made it, so ``resume`` can redo it.

It holds plain data only (the resolved config, the options, the sweep id); the search space is
copied beside it, so a resumed sweep never depends on files outside its directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.errors import ConfigError

MANIFEST_FILE = "margin-tune.json"
FORMAT_VERSION = 1


def write_manifest(out: Path, command: str, data: dict[str, Any]) -> None:
    content = {"format": FORMAT_VERSION, "command": command, **data}
    (out / MANIFEST_FILE).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(
            "DIR", f"{out} has no {MANIFEST_FILE}: not an output directory of margin-tune tune"
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError("DIR", f"cannot read {path}: {error}") from None
    if content.get("format") != FORMAT_VERSION:
        raise ConfigError("DIR", f"{path} has format {content.get('format')!r}, expected 1")
    return content
