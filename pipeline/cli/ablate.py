"""``margin-tune ablate``: a factorial grid × training seeds (and ``resume`` of one);
:func:`margin_tune.ablate` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from margin_tune.pipeline import api
from margin_tune.pipeline.api.dry_run import DryRun
from margin_tune.pipeline.cli.flags import add_config_flags, add_run_flags, run_kwargs
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
    if isinstance(outcome, DryRun):
        print(outcome.render(), end="")
        return 0
    return show(outcome)


def resume_from_manifest(out: Path, manifest: dict[str, Any], address: str | None) -> int:
    return show(api.resume_ablate(out, manifest, address))


def show(result: AblationResult) -> int:
    """Print the ablation's tables."""
    assert result.out is not None
    print((result.out / "table.md").read_text())
    print(f"wrote {result.out}; ablation run {result.run_id}")
    return 0
