"""What the run commands print at their end, shared: a dry run's plan, or the result through
the command's own ``show``; and the files of an output directory as ``--json`` lists them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from margin_tune.pipeline.api.dry_run import DryRun
from margin_tune.pipeline.outputs.manifest import MANIFEST_FILE
from margin_tune.pipeline.runtime.logs import LOG_FILE

_R = TypeVar("_R")


def finish(outcome: DryRun | _R, show: Callable[..., int], *, as_json: bool) -> int:
    """Print ``outcome``: a :class:`DryRun` as its plan (exit 0), else by ``show``."""
    if isinstance(outcome, DryRun):
        print(outcome.render(), end="")
        return 0
    return show(outcome, as_json=as_json)


def output_files(out: Path, plots: Path, **named: Path) -> dict[str, Any]:
    """``named`` files of ``out``, the ``*.png`` under ``plots``, the log and the manifest:
    absolute paths, what a script reads next."""
    return {
        **{name: str(path.resolve()) for name, path in named.items()},
        "plots": sorted(str(p.resolve()) for p in plots.glob("*.png")),
        "log": str((out / LOG_FILE).resolve()),
        "manifest": str((out / MANIFEST_FILE).resolve()),
    }
