"""Declarative search spaces, one YAML file per method, shipped with the package.

Only data lives here; ``margin_tune.pipeline.search.space`` reads and validates it. A user's own
space
follows the same format and is passed by path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def packaged_spaces() -> dict[str, Path]:
    """Name (file stem) to path of every packaged space."""
    root = resources.files("margin_tune.search_spaces")
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in root.iterdir()
        if entry.name.endswith(".yaml")
    }
