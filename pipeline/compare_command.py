"""``margin-tune compare``: the main job — every method tuned alike, re-trained over seeds,
compared on test classes (and ``resume`` of one).

Before anything runs, the output directory gets a manifest with the comparison as plain data
(base config, methods and their spaces, copied beside it, budget, seeds), the options and the
ids of the comparison's and each sweep's MLflow runs: all ``resume`` needs to continue it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.compare import TEST_METRICS, CompareResult, run_compare
from pipeline.compare_spec import PRESETS, CompareSpec, load_compare_spec
from pipeline.manifest import write_manifest
from pipeline.outputs import check_output_dir, create_output_dir, write_yaml
from pipeline.plots import comparison_bars, epoch_curve_files
from pipeline.search_space import load_space
from pipeline.sweep import SweepOptions, plan_sweep, sweep_cluster
from pipeline.sweep_flags import add_sweep_flags, default_out, sweep_options
from pipeline.tracking import Tracker, resolve_tracking_uri
from trainables.config import config_from_dict

#: Where each method's space is copied, as ``<method>.yaml``.
SPACES_DIR = "spaces"


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
    # Pin the store: a resume, from another directory, must log to the same one.
    options = dataclasses.replace(options, tracking_uri=resolve_tracking_uri(options.tracking_uri))
    out = args.out or default_out("compare")
    check_output_dir(out)
    for method, space in spec.spaces.items():  # data, split and sizes, before anything starts
        plan_sweep(method, spec.base, space, options, out / "sweeps" / method)
    manifest = {
        "comparison_id": uuid.uuid4().hex[:12],
        "sweep_ids": {method: uuid.uuid4().hex[:12] for method in spec.methods},
        "spec": _spec_data(spec),
        "options": dataclasses.asdict(options),
        "indicative": args.preset == "quick",
    }
    with sweep_cluster(options):
        create_output_dir(out)
        write_yaml(out / "base_config.yaml", spec.base.to_dict())
        (out / SPACES_DIR).mkdir()
        for method, space in spec.spaces.items():
            assert space.source is not None
            shutil.copyfile(space.source, out / SPACES_DIR / f"{method}.yaml")
        write_manifest(out, "compare", manifest)
        return execute(spec, options, out, manifest)


def resume_from_manifest(out: Path, manifest: dict[str, Any], address: str | None) -> int:
    spec = _spec_from_data(manifest["spec"], out / SPACES_DIR)
    options = SweepOptions(**manifest["options"])
    if address:
        options = dataclasses.replace(options, address=address)
    with sweep_cluster(options):
        return execute(spec, options, out, manifest)


def execute(spec: CompareSpec, options: SweepOptions, out: Path, manifest: dict[str, Any]) -> int:
    """Run (or continue) the comparison inside the caller's Ray session and print its table."""
    with Tracker(options.tracking_uri, options.experiment) as tracker:
        result = run_compare(
            spec,
            options,
            out,
            tracker,
            comparison_id=manifest["comparison_id"],
            sweep_ids=manifest["sweep_ids"],
        )
        files = write_comparison(result, spec, out, indicative=manifest["indicative"])
        for path in files:
            tracker.log_artifact(result.comparison_run_id, str(path), artifact_path="comparison")
        tracker.end_run(result.comparison_run_id)
    print((out / "table.md").read_text())
    print(f"wrote {out}; comparison run {result.comparison_run_id} in {tracker.tracking_uri}")
    return 0


def _spec_data(spec: CompareSpec) -> dict[str, Any]:
    """The comparison as JSON data; the spaces themselves are copied beside the manifest."""
    return {
        "base": spec.base.to_dict(),
        "methods": {method: space.name for method, space in spec.spaces.items()},
        "baselines": list(spec.baselines),
        "trials": spec.trials,
        "searcher": spec.searcher,
        "seeds": spec.seeds,
        "metric": spec.metric,
        "overrides": list(spec.overrides),
    }


def _spec_from_data(data: dict[str, Any], spaces: Path) -> CompareSpec:
    base = config_from_dict(data["base"])
    return CompareSpec(
        base=base,
        spaces={
            method: dataclasses.replace(load_space(spaces / f"{method}.yaml", base), name=name)
            for method, name in data["methods"].items()
        },
        baselines=tuple(data["baselines"]),
        trials=data["trials"],
        searcher=data["searcher"],
        seeds=data["seeds"],
        metric=data["metric"],
        overrides=tuple(data["overrides"]),
    )


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
    files += epoch_curve_files(
        result.final_histories,
        {
            "margin": "margin μ of each method's chosen config (seed 0)",
            "easy_ratio": "easy-triplet ratio (seed 0)",
        },
        out / "final",
    )
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
        cells += [mean_ci(row[f"{m}_mean"], row[f"{m}_ci95"]) for m in TEST_METRICS]
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
                f"{mean_ci(row['mean_difference'], row['ci95'], signed=True)} | {row['pairs']} | "
                f"{_p(row['t_test_p'])} | {_p(row['wilcoxon_p'])} |"
            )
    return "\n".join(lines) + "\n"


def mean_ci(mean: float, half_width: float, *, signed: bool = False) -> str:
    if pd.isna(mean):
        return "–"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if pd.isna(half_width) else f"{text} ± {half_width:.4f}"


def _p(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3g}"
