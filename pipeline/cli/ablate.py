"""``margin-tune ablate``: a factorial grid × training seeds (and ``resume`` of one);
:func:`margin_tune.ablate` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from margin_tune.pipeline import api
from margin_tune.pipeline.cli.flags import add_config_flags, add_run_flags, run_kwargs
from margin_tune.pipeline.cli.printing import finish, output_files
from margin_tune.pipeline.outputs.folders import json_text
from margin_tune.pipeline.runtime.logs import LOG_FILE

if TYPE_CHECKING:
    from margin_tune.pipeline.jobs.ablate.run import AblationResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument(
        "--grid", required=True, help="grid YAML, or a packaged grid's name (schedulers, …)"
    )
    parser.add_argument(
        "--seeds", type=int, help="training seeds per cell (default: the grid file's, else 3)"
    )
    add_run_flags(parser)


def run(args: argparse.Namespace) -> int:
    run = api.plan_ablate if args.dry_run else api.ablate
    outcome = run(
        args.grid,
        config=args.config,
        overrides=args.overrides,
        seeds=args.seeds,
        out=args.out,
        **run_kwargs(args),
    )
    return finish(outcome, show, as_json=args.json)


def resume_from_manifest(
    out: Path, manifest: dict[str, Any], address: str | None, as_json: bool = False
) -> int:
    return show(api.resume_ablate(out, manifest, address), as_json=as_json)


def show(result: AblationResult, *, as_json: bool = False) -> int:
    """Print the ablation's tables, or one JSON document of them."""
    assert result.out is not None
    out = result.out
    if as_json:
        out = out.resolve()
        print(
            json_text(
                {
                    "command": "ablate",
                    "exit_code": 0,
                    "ok": True,
                    "out": str(out),
                    "files": output_files(
                        out,
                        out,
                        table=out / "table.md",
                        **{n: out / f"{n}.csv" for n in ("runs", "cells", "main_effects")},
                    ),
                    "ablation_run_id": result.run_id,
                    "wall_seconds": result.wall_seconds,
                    "cells": result.cells.to_dict("records"),
                    "effects": result.effects.to_dict("records"),
                    "runs": result.runs.to_dict("records"),
                }
            )
        )
        return 0
    print((out / "table.md").read_text())
    print(f"ablation run {result.run_id}")
    plots = len(list(out.glob("*.png")))
    print(
        f"wrote {out}: table.md, runs.csv, cells.csv, main_effects.csv, {plots} plots (*.png), "
        f"{LOG_FILE}"
    )
    return 0
