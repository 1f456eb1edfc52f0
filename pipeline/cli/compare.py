"""``margin-tune compare``: the main job — every method tuned alike, re-trained over seeds,
compared on test classes (and ``resume`` of one); :func:`margin_tune.compare` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from margin_tune.pipeline import api
from margin_tune.pipeline.api.dry_run import DryRun
from margin_tune.pipeline.cli.flags import add_override_flag, add_sweep_flags, sweep_kwargs
from margin_tune.pipeline.jobs.compare.run import CompareResult
from margin_tune.pipeline.jobs.compare.spec import PRESETS
from margin_tune.pipeline.runtime.exit_codes import EXIT_RUNS_FAILED
from margin_tune.pipeline.runtime.secrets import redact_uri


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="compare.yaml (see the README)")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="a packaged comparison; --config keys win"
    )
    add_override_flag(parser, "override on the base trial config, repeatable")
    add_sweep_flags(parser, trials_required=False)


def run(args: argparse.Namespace) -> int:
    run = api.plan_compare if args.dry_run else api.compare
    outcome = run(
        args.config,
        preset=args.preset,
        overrides=args.overrides,
        trials=args.trials,
        out=args.out,
        **sweep_kwargs(args),
    )
    if isinstance(outcome, DryRun):
        print(outcome.render(), end="")
        return 0
    return show(outcome)


def resume_from_manifest(out: Path, manifest: dict[str, Any], address: str | None) -> int:
    return show(api.resume_compare(out, manifest, address))


def show(result: CompareResult) -> int:
    """Print the comparison's table; exit 1 when a method had no winner on some split."""
    assert result.out is not None and result.spec is not None
    out, spec = result.out, result.spec
    options = next(iter(result.sweeps.values())).plan.options
    print((out / "table.md").read_text())
    shown = redact_uri(options.tracking_uri or "")
    print(f"wrote {out}; comparison run {result.comparison_run_id} in {shown}")
    if not result.ok:
        print(
            f"margin-tune: {', '.join(result.methods_without_winner)}: no tuning trial completed "
            f"its {spec.base.train.epochs}-epoch budget on some split; see {out / 'tuning.csv'}"
        )
        return EXIT_RUNS_FAILED
    return 0
