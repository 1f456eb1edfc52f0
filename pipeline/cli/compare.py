"""``margin-tune compare``: the main job — every method tuned alike, re-trained over seeds,
compared on test classes (and ``resume`` of one); :func:`margin_tune.compare` runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from margin_tune.pipeline import api
from margin_tune.pipeline.cli.flags import add_override_flag, add_sweep_flags, sweep_kwargs
from margin_tune.pipeline.cli.printing import finish, output_files
from margin_tune.pipeline.jobs.compare.spec import PRESETS
from margin_tune.pipeline.outputs.folders import json_text
from margin_tune.pipeline.runtime.exit_codes import EXIT_RUNS_FAILED
from margin_tune.pipeline.runtime.logs import LOG_FILE
from margin_tune.pipeline.runtime.secrets import redact_uri

if TYPE_CHECKING:
    from margin_tune.pipeline.jobs.compare.run import CompareResult

#: The tables a comparison writes as CSV beside ``table.md``.
TABLE_FILES = ("table", "comparisons", "tuning", "runs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="compare.yaml (see the README)")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="a packaged comparison; --config keys win"
    )
    add_override_flag(parser, "override on the base trial config, repeatable")
    parser.add_argument(
        "--register-model",
        metavar="NAME",
        help="register the winner in the MLflow Model Registry as NAME (alias champion): the "
        "table's best method, its best re-training by validation",
    )
    add_sweep_flags(parser, trials_required=False)


def run(args: argparse.Namespace) -> int:
    run = api.plan_compare if args.dry_run else api.compare
    outcome = run(
        args.config,
        preset=args.preset,
        overrides=args.overrides,
        trials=args.trials,
        out=args.out,
        register_model=args.register_model,
        **sweep_kwargs(args),
    )
    return finish(outcome, show, as_json=args.json)


def resume_from_manifest(
    out: Path, manifest: dict[str, Any], address: str | None, as_json: bool = False
) -> int:
    return show(api.resume_compare(out, manifest, address), as_json=as_json)


def show(result: CompareResult, *, as_json: bool = False) -> int:
    """Print the comparison's table (or one JSON document); exit 1 when a method had no winner
    on some split."""
    assert result.out is not None and result.spec is not None
    out, spec = result.out, result.spec
    code = 0 if result.ok else EXIT_RUNS_FAILED
    options = next(iter(result.sweeps.values())).plan.options
    shown = redact_uri(options.tracking_uri or "")
    if as_json:
        print(json_text(document(result, code, shown, options.experiment)))
    else:
        print((out / "table.md").read_text())
        print(f"comparison run {result.comparison_run_id} in {shown}")
        if result.registered is not None:
            r = result.registered
            print(
                f"registered {r.name} version {r.version} (alias {r.alias}): {r.method}, the "
                f"best method by its mean {spec.primary} on the test classes "
                f"({r.test_mean:.4f}: the comparison's finding); its re-training split "
                f"{r.split} seed {r.seed} chosen among that method's by validation "
                f"{r.selected_by} {r.validation_value:.4f}, not by test (run {r.run_id})"
            )
        tables = ", ".join(f"{name}.csv" for name in TABLE_FILES)
        plots = len(list(out.glob("*.png")))
        print(f"wrote {out}: table.md, {tables}, {plots} plots (*.png), {LOG_FILE}")
    if not result.ok:
        print(
            f"margin-tune: {', '.join(result.methods_without_winner)}: no tuning trial completed "
            f"its {spec.base.train.epochs}-epoch budget on some split; see {out / 'tuning.csv'}",
            file=sys.stderr,
        )
    return code


def document(
    result: CompareResult, exit_code: int, tracking_uri: str, experiment: str
) -> dict[str, Any]:
    """What ``compare --json`` prints: paths, run ids, each method's chosen config per split,
    and the rows of the table, the paired comparisons, the tuning record and every run."""
    assert result.out is not None and result.spec is not None
    out, spec = result.out.resolve(), result.spec
    return {
        "command": "compare",
        "exit_code": exit_code,
        "ok": result.ok,
        "out": str(out),
        "files": output_files(
            out,
            out,
            table=out / "table.md",
            **{name: out / f"{name}.csv" for name in TABLE_FILES},
        ),
        "tracking_uri": tracking_uri,
        "experiment": experiment,
        "comparison_run_id": result.comparison_run_id,
        "methods": list(spec.methods),
        "baselines": list(spec.baselines),
        "metric": spec.metric,
        "methods_without_winner": result.methods_without_winner,
        "registered": None if result.registered is None else dataclasses.asdict(result.registered),
        "best_configs": {
            str(split): {method: config.to_dict() for method, config in chosen.items()}
            for split, chosen in result.best_configs.items()
        },
        "table": result.table.to_dict("records"),
        "comparisons": result.comparisons.to_dict("records"),
        "tuning": result.tuning.to_dict("records"),
        "runs": result.runs.to_dict("records"),
    }
