"""The flags ``tune``, ``compare`` and ``ablate`` share, and what they turn into."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from margin_tune.pipeline.search.searchers import SEARCHERS
from margin_tune.pipeline.sweep.plan import DEFAULT_CHECKPOINT_INTERVAL_S


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``-q``, ``-v`` and ``--json``: how much a running command says (see ``Console``)."""
    group = parser.add_argument_group("output")
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const="quiet",
        default="normal",
        help="only the final summary and the paths (the full log is in DIR/margin-tune.log)",
    )
    loudness.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const="verbose",
        help="Ray Tune's own status tables and every library's INFO log",
    )
    group.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document at the end (paths, run ids, best config, table rows) "
        "on stdout; progress goes to stderr",
    )


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file (default: the packaged config)")
    add_override_flag(parser, "dotted config override, repeatable: --set train.epochs=10")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """``--model`` and its ``--tracking-uri``: the saved model that embed and verify read."""
    parser.add_argument(
        "--model",
        required=True,
        help="a train output directory (or its model/ folder), or a logged model: "
        "models:/<id> or runs:/<run id>/embedder",
    )
    parser.add_argument(
        "--tracking-uri", help="the MLflow store of a models:/ or runs:/ URI (default as tune's)"
    )


def add_override_flag(parser: argparse.ArgumentParser, help_line: str) -> None:
    """``--set KEY=VALUE``, repeatable, into ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help_line,
    )


def add_sweep_flags(parser: argparse.ArgumentParser, *, trials_required: bool) -> None:
    """The search flags of ``tune`` and ``compare``, then :func:`add_run_flags`."""
    group = parser.add_argument_group("search")
    group.add_argument(
        "--trials", type=int, required=trials_required, default=None, help="trials per sweep"
    )
    group.add_argument(
        "--searcher",
        help=f"one of: {', '.join(SEARCHERS.names())} (default tpe, or compare.yaml's)",
    )
    group.add_argument("--seed", type=int, default=0, help="searcher seed")
    group.add_argument(
        "--storage",
        help="where the Optuna study lives: a journal file path (default without --address: "
        "DIR/optuna-journal.log) or an RDB URL, e.g. sqlite:///optuna.db",
    )
    group.add_argument("--grace-period", type=int, default=2, help="ASHA: epochs before a stop")
    group.add_argument("--reduction-factor", type=float, default=2.0, help="ASHA: keep 1/this")
    group.add_argument("--no-early-stopping", action="store_true", help="disable ASHA")
    group.add_argument(
        "--objectives",
        metavar="METRIC:MODE,...",
        help="tune only: optimise several reported metrics at once, e.g. "
        "val_map_at_r:max,epoch_seconds:min (the first is the primary); logs the Pareto front; "
        "needs --no-early-stopping and searcher tpe, nsga2, random or qmc",
    )
    add_run_flags(parser)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """How and where trials run: the flags every Ray Tune command shares, ``ablate`` too."""
    group = parser.add_argument_group("execution")
    group.add_argument("--concurrency", type=int, default=2, help="trials running at once")
    group.add_argument("--cpus-per-trial", type=float, default=1.0)
    group.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions allowed")
    group.add_argument("--max-failures", type=int, default=0, help="retries of a failed trial")
    group.add_argument(
        "--checkpoint-interval",
        type=float,
        default=DEFAULT_CHECKPOINT_INTERVAL_S,
        metavar="SECONDS",
        help="a trial checkpoints at most this often, and at its last epoch (0: every epoch)",
    )
    where = parser.add_argument_group("where")
    where.add_argument("--address", help="join this Ray cluster (default: start a local one)")
    where.add_argument(
        "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    where.add_argument("--experiment", default="margin-tune", help="MLflow experiment")
    where.add_argument("--out", type=Path, help="output directory (default runs/<name>-<time>)")
    add_output_flags(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything, print the config, the space and the budget with a rough wall "
        "time from one timed epoch; write nothing, start no Ray, make no MLflow run",
    )


def sweep_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The search flags of :func:`add_sweep_flags` as the API's keyword options; a searcher
    left unset is left to the API (``compare`` takes its spec's)."""
    search = {
        "seed": args.seed,
        "storage": args.storage,
        "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor,
        "early_stopping": not args.no_early_stopping,
    }
    if args.searcher is not None:
        search["searcher"] = args.searcher
    if args.objectives:
        search["objectives"] = args.objectives
    return {**run_kwargs(args), **search}


def run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of :func:`add_run_flags` (but ``--out``) as the API's keyword options."""
    return {
        "concurrency": args.concurrency,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "experiment": args.experiment,
        "tracking_uri": args.tracking_uri,
        "address": args.address,
        "max_failures": args.max_failures,
        "checkpoint_interval_s": args.checkpoint_interval,
    }
