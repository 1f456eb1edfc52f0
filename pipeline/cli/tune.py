"""``margin-tune tune``: one sweep over a search space (and ``resume`` of one).

What the sweep's outcome is printed with comes from the run's modules, imported in
:func:`show` and :func:`document`, after the sweep: importing this command must not import
Ray Tune or MLflow, which the sweep imports while Ray starts
(:mod:`~margin_tune.pipeline.sweep.plan`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from margin_tune.pipeline import api
from margin_tune.pipeline.cli.flags import add_config_flags, add_sweep_flags, sweep_kwargs
from margin_tune.pipeline.cli.printing import finish, output_files
from margin_tune.pipeline.outputs.folders import json_text
from margin_tune.pipeline.runtime.exit_codes import EXIT_RUNS_FAILED
from margin_tune.pipeline.runtime.logs import LOG_FILE
from margin_tune.pipeline.runtime.secrets import redact_uri
from margin_tune.pipeline.search.space import SearchSpace
from margin_tune.pipeline.search.study import SEED_MODES
from margin_tune.pipeline.sweep.population import SCHEDULE_FILE
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG
from margin_tune.trainables.errors import ConfigError

if TYPE_CHECKING:
    from margin_tune.pipeline.sweep.tuner import SweepResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument(
        "--space", required=True, help="search-space YAML, or a packaged name (dams, constant, …)"
    )
    parser.add_argument(
        "--warm-start",
        metavar="SWEEP_ID_OR_DIR",
        help="seed the study with the completed trials of an earlier sweep of the same metric "
        "(its sweep id in this store and experiment, or its tune output directory): added as "
        "finished, not run, not counted in --trials; only the parameters both spaces search",
    )
    parser.add_argument(
        "--warm-start-mode",
        choices=SEED_MODES,
        default="add",
        help="add (default): every usable earlier trial as a finished one, free; enqueue: its "
        "best few run first here instead of TPE's random start-up, and count in --trials",
    )
    parser.add_argument(
        "--population",
        type=int,
        default=0,
        metavar="N",
        help="population-based training of N members instead of a searcher: every "
        "--perturbation-interval epochs the worst quarter copies the best and perturbs "
        "target_easy_ratio, step_size and lr; N x epochs trial-epochs (--trials is N)",
    )
    parser.add_argument(
        "--perturbation-interval",
        type=int,
        default=2,
        metavar="EPOCHS",
        help="with --population: epochs between exploit-and-perturb steps (default 2)",
    )
    add_sweep_flags(parser, trials_required=False)


def run(args: argparse.Namespace) -> int:
    run = api.plan_tune if args.dry_run else api.tune
    trials = args.trials if args.trials is not None else args.population
    if args.trials is None and not args.population:
        raise ConfigError("--trials", "required (or --population N, which runs N trials)")
    population = (
        {"population": args.population, "perturbation_interval": args.perturbation_interval}
        if args.population
        else {}
    )
    outcome = run(
        args.space,
        trials=trials,
        config=args.config,
        overrides=args.overrides,
        out=args.out,
        warm_start=args.warm_start,
        warm_start_mode=args.warm_start_mode,
        **sweep_kwargs(args),
        **population,
    )
    return finish(outcome, show, as_json=args.json)


def resume_from_manifest(
    out: Path, manifest: dict[str, Any], address: str | None, as_json: bool = False
) -> int:
    return show(api.resume_tune(out, manifest, address), as_json=as_json)


def show(result: SweepResult, *, as_json: bool = False) -> int:
    """Print a sweep's outcome, as text or as one JSON document; its exit code (1 when no
    trial trained its budget). The trials table is in ``trials.csv``, not on the screen."""
    from margin_tune.pipeline.sweep.callback import run_name
    from margin_tune.pipeline.sweep.tuner import PARETO_FILE

    plan, space = result.plan, result.plan.space
    code = 0 if result.ok else EXIT_RUNS_FAILED
    if as_json:
        print(json_text(document(result, code)))
    else:
        budget = result.budget
        print(f"{result.summary}; {budget['trial_epochs']} trial-epochs")
        if result.best and result.best_config is not None:
            best_id, best_value = result.best[TRIAL_ID_TAG], result.best[space.metric]
            print(
                f"best: {run_name(result.best_config)}  {space.metric} {best_value:.4f}  "
                f"(trial {best_id})"
            )
            print(f"  {searched_text(result.best, space)}")
        objectives = plan.options.objective_list
        if objectives:
            front = result.pareto
            names = ", ".join(f"{o.metric} ({o.mode})" for o in objectives)
            print(f"Pareto front over {names}: {len(front)} trials")
            for _, row in front.iterrows():
                values = "  ".join(f"{o.metric} {row[o.metric]:.4g}" for o in objectives)
                print(f"  {row[TRIAL_ID_TAG]}  {values}  {searched_text(dict(row), space)}")
        shown = redact_uri(plan.options.tracking_uri or "")
        print(f"sweep run {result.parent_run_id} in {shown} (experiment {plan.options.experiment})")
        if result.schedule is not None:
            lineage = result.schedule["trial_id"].nunique()
            print(
                f"learned schedule: {SCHEDULE_FILE}, μ and lr per epoch of the best member "
                f"({len(result.schedule)} epochs, {lineage} trials in its lineage); replay it "
                f"with --set margin.scheduler=replay --set "
                f"margin.schedule={result.out / SCHEDULE_FILE}"
            )
        pareto = f"{PARETO_FILE}, " if plan.options.objectives else ""
        print(f"wrote {result.out}: trials.csv, {pareto}plots/, {LOG_FILE}")
    if not result.ok:
        reason = f"; first error: {result.errors[0]}" if result.errors else ""
        print(
            f"margin-tune: no trial completed its {plan.base.train.epochs}-epoch budget{reason}",
            file=sys.stderr,
        )
    return code


def searched_values(best: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The values the searcher chose for a trial row (not the space's fixed ones)."""
    values = {}
    for parameter in space.searched:
        value = best.get(f"config.{parameter.path}")
        if value is not None and value == value:  # NaN: a value this trial lacks
            values[parameter.path] = value
    return values


def searched_text(best: dict[str, Any], space: SearchSpace) -> str:
    """``margin.initial_margin=0.297  train.lr=0.00123``: the searched values of a trial row."""
    return "  ".join(
        f"{path}={f'{value:.4g}' if isinstance(value, float) else value}"
        for path, value in searched_values(best, space).items()
    )


def document(result: SweepResult, exit_code: int) -> dict[str, Any]:
    """What ``tune --json`` prints: paths, run ids, the best trial and config, every trial."""
    from margin_tune.pipeline.sweep.callback import run_name

    plan, space, out = result.plan, result.plan.space, result.out.resolve()
    objectives = plan.options.objective_list
    best = result.best
    best_config = result.best_config
    return {
        "command": "tune",
        "exit_code": exit_code,
        "ok": result.ok,
        "out": str(out),
        "files": output_files(out, out / "plots", trials=out / "trials.csv"),
        "tracking_uri": redact_uri(plan.options.tracking_uri or ""),
        "experiment": plan.options.experiment,
        "sweep_id": plan.sweep_id,
        "sweep_run_id": result.parent_run_id,
        "metric": space.metric,
        "mode": space.mode,
        "budget": result.budget,
        "best": None
        if not best or best_config is None
        else {
            "trial_id": best[TRIAL_ID_TAG],
            "run_id": best.get("run_id"),
            "run_name": run_name(best_config),
            "epochs": best["epochs"],
            "value": best[space.metric],
            "searched": searched_values(best, space),
            "config": best_config.to_dict(),
        },
        "objectives": [str(o) for o in plan.options.objective_list],
        "pareto": [
            {"trial_id": row[TRIAL_ID_TAG], **{o.metric: row[o.metric] for o in objectives}}
            for _, row in result.pareto.iterrows()
        ],
        "trials": result.trials.to_dict("records"),
        "errors": result.errors,
    }
