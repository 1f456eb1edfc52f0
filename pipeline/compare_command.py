"""``margin-tune compare``: the main job — every method tuned alike, re-trained over seeds,
compared on test classes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pipeline.compare import TEST_METRICS, CompareResult, run_compare
from pipeline.compare_spec import PRESETS, CompareSpec, load_compare_spec
from pipeline.outputs import check_output_dir, create_output_dir, write_yaml
from pipeline.plots import comparison_bars, epoch_curves
from pipeline.sweep import plan_sweep, sweep_cluster
from pipeline.sweep_flags import add_sweep_flags, default_out, sweep_options
from pipeline.tracking import Tracker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="compare.yaml (see the README)")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="a packaged comparison; --config keys win"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override on the base trial config, repeatable",
    )
    add_sweep_flags(parser, trials_required=False)


def run(args: argparse.Namespace) -> int:
    spec = load_compare_spec(args.config, args.preset, args.overrides)
    trials = spec.trials if args.trials is None else args.trials
    options = sweep_options(args, trials, default_searcher=spec.searcher)
    out = args.out or default_out("compare")
    check_output_dir(out)
    for method, space in spec.spaces.items():  # data, split and sizes, before anything starts
        plan_sweep(method, spec.base, space, options, out / "sweeps" / method)
    with sweep_cluster(options):
        create_output_dir(out)
        write_yaml(out / "base_config.yaml", spec.base.to_dict())
        with Tracker(options.tracking_uri, options.experiment) as tracker:
            result = run_compare(spec, options, out, tracker, trials=trials)
            files = write_comparison(result, spec, out, indicative=args.preset == "quick")
            for path in files:
                tracker.log_artifact(
                    result.comparison_run_id, str(path), artifact_path="comparison"
                )
            tracker.end_run(result.comparison_run_id)
    print((out / "table.md").read_text())
    print(f"wrote {out}; comparison run {result.comparison_run_id} in {tracker.tracking_uri}")
    return 0


def write_comparison(
    result: CompareResult, spec: CompareSpec, out: Path, *, indicative: bool
) -> list[Path]:
    """table.csv, comparisons.csv, runs.csv, table.md and the plots; returns their paths."""
    files = [out / "table.csv", out / "comparisons.csv", out / "runs.csv", out / "table.md"]
    result.table.to_csv(files[0], index=False)
    result.comparisons.to_csv(files[1], index=False)
    result.runs.to_csv(files[2], index=False)
    files[3].write_text(render_markdown(result, spec, indicative=indicative), encoding="utf-8")
    files.append(comparison_bars(result.table, TEST_METRICS, out / "test_metrics.png"))
    for column, title in (
        ("margin", "margin μ of each method's chosen config (seed 0)"),
        ("easy_ratio", "easy-triplet ratio (seed 0)"),
    ):
        path = epoch_curves(result.final_histories, column, title, out / f"final_{column}.png")
        if path is not None:
            files.append(path)
    return files


def render_markdown(result: CompareResult, spec: CompareSpec, *, indicative: bool) -> str:
    budget = next(iter(result.sweeps.values())).plan.options
    lines = [
        f"# Comparison on {spec.base.dataset.name} (test classes, {spec.seeds} training seeds)",
        "",
        f"Each method tuned with {budget.trials} trials × {spec.base.train.epochs} epochs "
        f"({budget.searcher}) on validation classes; its best config re-trained with seeds "
        f"0..{spec.seeds - 1} on split {spec.base.dataset.split_seed}. Mean ± 95% CI "
        "(Student t). Collapsed and failed runs are counted, not averaged in.",
        "",
    ]
    if indicative:
        lines += [
            "> Quick preset: few trials, epochs and seeds. Its p-values are indicative only.",
            "",
        ]
    header = ["method", "runs", "collapsed", "failed", *TEST_METRICS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in result.table.iterrows():
        cells = [str(row["method"]), str(row["runs"]), str(row["collapsed"]), str(row["failed"])]
        cells += [_mean_ci(row[f"{m}_mean"], row[f"{m}_ci95"]) for m in TEST_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    if not result.comparisons.empty:
        lines += [
            "",
            "Paired by training seed: scheduler − baseline (paired t-test; Wilcoxon signed-rank "
            "when n ≥ 6).",
            "",
            "| scheduler | baseline | metric | difference ± 95% CI | n | t-test p | Wilcoxon p |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, row in result.comparisons.iterrows():
            lines.append(
                f"| {row['scheduler']} | {row['baseline']} | {row['metric']} | "
                f"{_mean_ci(row['mean_difference'], row['ci95'], signed=True)} | {row['pairs']} | "
                f"{_p(row['t_test_p'])} | {_p(row['wilcoxon_p'])} |"
            )
    return "\n".join(lines) + "\n"


def _mean_ci(mean: float, half_width: float, *, signed: bool = False) -> str:
    if pd.isna(mean):
        return "–"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if pd.isna(half_width) else f"{text} ± {half_width:.4f}"


def _p(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3g}"
