"""The ``margin-tune`` command: one entry point, one subcommand per job.

Every bad input becomes one line on stderr naming the field and what is allowed, exit code 2,
before any output directory, Ray session or MLflow run exists.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from pipeline import (
    ablate_command,
    compare_command,
    interrupts,
    report_command,
    resume_command,
    sync_command,
    train_command,
    tune_command,
    ui_command,
)
from pipeline.exit_codes import EXIT_BAD_INPUT
from trainables.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="margin-tune",
        description="Margin schedulers for the triplet loss: train, tune and compare.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train one trial and evaluate it on test classes")
    train_command.add_arguments(train)
    train.set_defaults(handler=train_command.run)
    tune = commands.add_parser("tune", help="sweep one search space with Ray Tune + Optuna")
    tune_command.add_arguments(tune)
    tune.set_defaults(handler=tune_command.run)
    resume = commands.add_parser(
        "resume", help="continue an interrupted tune, compare or ablate from its DIR"
    )
    resume_command.add_arguments(resume)
    resume.set_defaults(handler=resume_command.run)
    compare = commands.add_parser(
        "compare", help="tune every method alike, re-train over seeds, compare on test classes"
    )
    compare_command.add_arguments(compare)
    compare.set_defaults(handler=compare_command.run)
    ablate = commands.add_parser(
        "ablate", help="a factorial grid × training seeds as Ray Tune trials, with main effects"
    )
    ablate_command.add_arguments(ablate)
    ablate.set_defaults(handler=ablate_command.run)
    sync = commands.add_parser(
        "sync", help="write what Ray Tune's results in DIR hold into MLflow (idempotent)"
    )
    sync_command.add_arguments(sync)
    sync.set_defaults(handler=sync_command.run)
    report = commands.add_parser("report", help="sweeps, trials and comparisons from MLflow")
    report_command.add_arguments(report)
    report.set_defaults(handler=report_command.run)
    ui = commands.add_parser(
        "ui", help="MLflow UI (and optuna-dashboard) on the project's stores, on 127.0.0.1"
    )
    ui_command.add_arguments(ui)
    ui.set_defaults(handler=ui_command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with interrupts.handled():
            return int(args.handler(args))
    except ConfigError as error:
        print(f"margin-tune: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except interrupts.InterruptedRunError as stop:
        where = f"; continue with: margin-tune resume {stop.out}" if stop.out else ""
        print(f"margin-tune: interrupted{where}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("margin-tune: interrupted", file=sys.stderr)
        return interrupts.exit_code()


if __name__ == "__main__":
    sys.exit(main())
