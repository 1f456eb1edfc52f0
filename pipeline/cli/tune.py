"""``margin-tune tune``: one sweep over a search space (and ``resume`` of one)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

from margin_tune.pipeline.cli.flags import (
    add_config_flags,
    add_sweep_flags,
    default_out,
    sweep_options,
)
from margin_tune.pipeline.outputs.folders import check_output_dir, new_output_dir, write_yaml
from margin_tune.pipeline.outputs.manifest import manifest_options, write_manifest
from margin_tune.pipeline.runtime.exit_codes import EXIT_RUNS_FAILED
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.tuner import (
    SweepOptions,
    SweepPlan,
    plan_sweep,
    record_sweep_outputs,
    run_sweep,
    sweep_cluster,
)
from margin_tune.pipeline.tracking.store import resolve_tracking_uri
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG
from margin_tune.trainables.parts import config_from_dict, load_config

SPACE_COPY = "space.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument(
        "--space", required=True, help="search-space YAML, or a packaged name (dams, constant, …)"
    )
    add_sweep_flags(parser, trials_required=True)


def run(args: argparse.Namespace) -> int:
    base = load_config(args.config, args.overrides)
    space = load_space(args.space, base)
    options = sweep_options(args, args.trials)
    # Pin the store: trials resumed later, from another directory, must log to the same one.
    options = dataclasses.replace(options, tracking_uri=resolve_tracking_uri(options.tracking_uri))
    out = args.out or default_out(space.name)
    check_output_dir(out)
    plan = plan_sweep(space.name, base, space, options, out)
    with new_output_dir(out), sweep_cluster(options):
        write_yaml(out / "config.yaml", base.to_dict())
        assert space.source is not None
        shutil.copyfile(space.source, out / SPACE_COPY)
        write_manifest(
            out,
            "tune",
            {
                "name": plan.name,
                "space_name": space.name,
                "sweep_id": plan.sweep_id,
                "base": base.to_dict(),
                "options": dataclasses.asdict(options),
            },
        )
        return execute(plan)


def resume_from_manifest(out: Path, manifest: dict[str, Any], address: str | None) -> int:
    base = config_from_dict(manifest["base"])
    space = dataclasses.replace(load_space(out / SPACE_COPY, base), name=manifest["space_name"])
    options = SweepOptions(**manifest_options(manifest))
    if address:
        options = dataclasses.replace(options, address=address)
    plan = plan_sweep(manifest["name"], base, space, options, out, sweep_id=manifest["sweep_id"])
    with sweep_cluster(options):
        return execute(plan)


def execute(plan: SweepPlan) -> int:
    """Run a planned sweep inside the caller's Ray session and print its outcome."""
    options, out, space = plan.options, plan.out, plan.space
    with Tracker(options.tracking_uri, options.experiment) as tracker:
        result = run_sweep(plan, tracker)
        plots = record_sweep_outputs(result, tracker)
    print(f"\n{len(result.trials)} trials; sweep run {result.parent_run_id} in {tracker.shown_uri}")
    print(result.trials.drop(columns=["run_id"]).to_string(index=False, max_colwidth=24))
    if result.best:
        best_id, best_value = result.best[TRIAL_ID_TAG], result.best[space.metric]
        print(f"\nbest trial {best_id} ({space.metric} {best_value:.4f}):")
        for key, value in result.best.items():
            if key.startswith("config."):
                print(f"  {key.removeprefix('config.')} = {value}")
    print(f"wrote {out} ({len(plots)} plots)")
    print(result.summary)
    if not result.best:
        reason = f"; first error: {result.errors[0]}" if result.errors else ""
        print(
            f"margin-tune: no trial completed its {plan.base.train.epochs}-epoch budget{reason}",
            file=sys.stderr,
        )
        return EXIT_RUNS_FAILED
    return 0
