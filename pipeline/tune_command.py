"""``margin-tune tune``: one sweep over a search space."""

from __future__ import annotations

import argparse

from pipeline.outputs import check_output_dir, create_output_dir, write_yaml
from pipeline.plots import sweep_plots
from pipeline.search_space import load_space
from pipeline.sweep import plan_sweep, ray_session, run_sweep
from pipeline.sweep_flags import add_config_flags, add_sweep_flags, default_out, sweep_options
from pipeline.tracking import Tracker
from trainables.config import load_config


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
    out = args.out or default_out(space.name)
    check_output_dir(out)
    plan = plan_sweep(space.name, base, space, options, out)
    create_output_dir(out)
    write_yaml(out / "config.yaml", base.to_dict())
    with Tracker(options.tracking_uri, options.experiment) as tracker, ray_session(options.address):
        result = run_sweep(plan, tracker)
        result.trials.to_csv(out / "trials.csv", index=False)
        plots = sweep_plots(result, out / "plots")
        tracker.log_artifacts(result.parent_run_id, str(out / "plots"), artifact_path="plots")
        tracker.log_artifact(result.parent_run_id, str(out / "trials.csv"))
    print(
        f"\n{len(result.trials)} trials; sweep run {result.parent_run_id} in {tracker.tracking_uri}"
    )
    print(result.trials.drop(columns=["run_id"]).to_string(index=False, max_colwidth=24))
    if result.best:
        best_id, best_value = result.best["margin_tune.trial_id"], result.best[space.metric]
        print(f"\nbest trial {best_id} ({space.metric} {best_value:.4f}):")
        for key, value in result.best.items():
            if key.startswith("config."):
                print(f"  {key.removeprefix('config.')} = {value}")
    print(f"wrote {out} ({len(plots)} plots)")
    return 0
