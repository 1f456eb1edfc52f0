"""``margin-tune tune``: one sweep over a search space (and ``resume`` of one)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from margin_tune.pipeline import api
from margin_tune.pipeline.api.dry_run import DryRun
from margin_tune.pipeline.cli.flags import add_config_flags, add_sweep_flags, sweep_kwargs
from margin_tune.pipeline.runtime.exit_codes import EXIT_RUNS_FAILED
from margin_tune.pipeline.runtime.secrets import redact_uri
from margin_tune.pipeline.sweep.tuner import SweepResult
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument(
        "--space", required=True, help="search-space YAML, or a packaged name (dams, constant, …)"
    )
    add_sweep_flags(parser, trials_required=True)


def run(args: argparse.Namespace) -> int:
    run = api.plan_tune if args.dry_run else api.tune
    outcome = run(
        args.space,
        trials=args.trials,
        config=args.config,
        overrides=args.overrides,
        out=args.out,
        **sweep_kwargs(args),
    )
    if isinstance(outcome, DryRun):
        print(outcome.render(), end="")
        return 0
    return show(outcome)


def resume_from_manifest(out: Path, manifest: dict[str, Any], address: str | None) -> int:
    return show(api.resume_tune(out, manifest, address))


def show(result: SweepResult) -> int:
    """Print a sweep's outcome; its exit code (1 when no trial trained its budget)."""
    plan, space = result.plan, result.plan.space
    shown = redact_uri(plan.options.tracking_uri or "")
    print(f"\n{len(result.trials)} trials; sweep run {result.parent_run_id} in {shown}")
    print(result.trials.drop(columns=["run_id"]).to_string(index=False, max_colwidth=24))
    if result.best:
        best_id, best_value = result.best[TRIAL_ID_TAG], result.best[space.metric]
        print(f"\nbest trial {best_id} ({space.metric} {best_value:.4f}):")
        for key, value in result.best.items():
            if key.startswith("config."):
                print(f"  {key.removeprefix('config.')} = {value}")
    print(f"wrote {result.out}")
    print(result.summary)
    if not result.ok:
        reason = f"; first error: {result.errors[0]}" if result.errors else ""
        print(
            f"margin-tune: no trial completed its {plan.base.train.epochs}-epoch budget{reason}",
            file=sys.stderr,
        )
        return EXIT_RUNS_FAILED
    return 0
