"""``margin-tune report``: sweeps, trials and comparisons read back from MLflow as tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from margin_tune.pipeline import api
from margin_tune.pipeline.analysis.report import FORMATS, render
from margin_tune.pipeline.tracking.store import DEFAULT_EXPERIMENT
from margin_tune.trainables.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment (default margin-tune)"
    )
    parser.add_argument(
        "--sweep",
        metavar="ID",
        help="one sweep's trials, or one comparison's final table: a sweep id or run id, "
        "or a unique prefix of either (default: every sweep, and the best trial per method)",
    )
    parser.add_argument(
        "--comparison",
        metavar="ID",
        help="one comparison (sweep id or run id, or a unique prefix): its final table, or "
        "with --html the whole comparison as one page",
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="with --comparison: a new self-contained .html file (tables, tests, curves, "
        "maps, commands and versions; inline CSS and images, opens offline)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="default table")
    parser.add_argument(
        "--sort",
        metavar="METRIC",
        help="metric column to sort by, best first by the sweep's mode "
        "(default: the sweep's metric)",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlflow.db)"
    )


def run(args: argparse.Namespace) -> int:
    if args.comparison is not None and args.sweep is not None:
        raise ConfigError("--comparison", "give --comparison or --sweep, not both")
    if args.html is not None:
        if args.comparison is None:
            raise ConfigError("--html", "needs --comparison ID: the page is one comparison's")
        written = api.report_html(
            args.comparison, args.html, args.experiment, tracking_uri=args.tracking_uri
        )
        print(f"wrote {written}")
        return 0
    tables = api.report_tables(
        args.experiment,
        sweep=args.sweep,
        comparison=args.comparison,
        sort=args.sort,
        tracking_uri=args.tracking_uri,
    )
    print(render(tables, args.format), end="")
    return 0
