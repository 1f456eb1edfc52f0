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

from margin_tune.pipeline.analysis.plots import comparison_bars, epoch_curve_files
from margin_tune.pipeline.analysis.tables import mean_ci
from margin_tune.pipeline.cli.flags import (
    add_override_flag,
    add_sweep_flags,
    default_out,
    sweep_options,
)
from margin_tune.pipeline.jobs.compare.run import (
    CompareResult,
    check_split_layout,
    run_compare,
    split_config,
)
from margin_tune.pipeline.jobs.compare.spec import PRESETS, CompareSpec, load_compare_spec
from margin_tune.pipeline.outputs.folders import check_output_dir, new_output_dir, write_yaml
from margin_tune.pipeline.outputs.manifest import manifest_options, write_manifest
from margin_tune.pipeline.runtime.exit_codes import EXIT_RUNS_FAILED
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.tuner import SweepOptions, plan_sweep, sweep_cluster
from margin_tune.pipeline.tracking.store import resolve_tracking_uri
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.data import load_dataset
from margin_tune.trainables.metric_names import (
    COUNT_KEYS,
    EASY_RATIO,
    EVALUATION_METRICS,
    MARGIN,
    on_test,
)
from margin_tune.trainables.parts import config_from_dict

#: Where each method's space is copied, as ``<method>.yaml``.
SPACES_DIR = "spaces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="compare.yaml (see the README)")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="a packaged comparison; --config keys win"
    )
    add_override_flag(parser, "override on the base trial config, repeatable")
    add_sweep_flags(parser, trials_required=False)


def run(args: argparse.Namespace) -> int:
    spec = load_compare_spec(args.config, args.preset, args.overrides)
    trials = spec.trials if args.trials is None else args.trials
    options = sweep_options(args, trials, default_searcher=spec.searcher)
    # Pin the store: a resume, from another directory, must log to the same one.
    options = dataclasses.replace(options, tracking_uri=resolve_tracking_uri(options.tracking_uri))
    out = args.out or default_out("compare")
    check_output_dir(out)
    dataset = load_dataset(spec.base.dataset)
    for split in spec.split_seeds:  # data, every split and sizes, before anything starts
        for method, space in spec.spaces.items():
            base = split_config(spec.base, split)
            plan_sweep(method, base, space, options, out / method, dataset=dataset)
    manifest = {
        "comparison_id": uuid.uuid4().hex[:12],
        "sweep_ids": {
            str(split): {method: uuid.uuid4().hex[:12] for method in spec.methods}
            for split in spec.split_seeds
        },
        "spec": _spec_data(spec),
        "options": dataclasses.asdict(options),
        "indicative": args.preset == "quick",
        "split_seeds": list(spec.split_seeds),
        "tuning_seeds": list(spec.tuning_seeds),
        "retraining_seeds": list(spec.final_seeds),
    }
    with new_output_dir(out), sweep_cluster(options):
        write_yaml(out / "base_config.yaml", spec.base.to_dict())
        (out / SPACES_DIR).mkdir()
        for method, space in spec.spaces.items():
            assert space.source is not None
            shutil.copyfile(space.source, out / SPACES_DIR / f"{method}.yaml")
        write_manifest(out, "compare", manifest)
        return execute(spec, options, out, manifest)


def resume_from_manifest(out: Path, manifest: dict[str, Any], address: str | None) -> int:
    check_split_layout(out, manifest)
    spec = _spec_from_data(manifest["spec"], out / SPACES_DIR)
    options = SweepOptions(**manifest_options(manifest))
    if address:
        options = dataclasses.replace(options, address=address)
    with sweep_cluster(options):
        return execute(spec, options, out, manifest)


def execute(spec: CompareSpec, options: SweepOptions, out: Path, manifest: dict[str, Any]) -> int:
    """Run (or continue) the comparison inside the caller's Ray session and print its table.

    Exits 1 when a method had no trial that trained its whole budget on some split: the tables
    are written first and show the gap.
    """
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
        missing = result.methods_without_winner
        tracker.end_run(result.comparison_run_id, "FAILED" if missing else "FINISHED")
    print((out / "table.md").read_text())
    print(f"wrote {out}; comparison run {result.comparison_run_id} in {tracker.shown_uri}")
    if missing:
        print(
            f"margin-tune: {', '.join(missing)}: no tuning trial completed its "
            f"{spec.base.train.epochs}-epoch budget on some split; see {out / 'tuning.csv'}"
        )
        return EXIT_RUNS_FAILED
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
        "splits": spec.splits,
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
        splits=data["splits"],
    )


def write_comparison(
    result: CompareResult, spec: CompareSpec, out: Path, *, indicative: bool
) -> list[Path]:
    """table.csv, comparisons.csv, tuning.csv, runs.csv, table.md and the plots."""
    files = [
        out / "table.csv",
        out / "comparisons.csv",
        out / "tuning.csv",
        out / "runs.csv",
        out / "table.md",
    ]
    result.table.to_csv(files[0], index=False)
    result.comparisons.to_csv(files[1], index=False)
    result.tuning.to_csv(files[2], index=False)
    result.runs.to_csv(files[3], index=False)
    files[4].write_text(render_markdown(result, spec, indicative=indicative), encoding="utf-8")
    files.append(comparison_bars(result.table, EVALUATION_METRICS, out / "test_metrics.png"))
    files += epoch_curve_files(
        result.final_histories,
        {
            MARGIN: "margin μ of each method's chosen config (first re-training)",
            EASY_RATIO: "easy-triplet ratio (first re-training)",
        },
        out / "final",
    )
    return files


def caption(result: CompareResult, spec: CompareSpec) -> list[str]:
    """What the table's numbers are, which runs they come from and what the interval covers."""
    options = next(iter(result.sweeps.values())).plan.options
    seeds = ", ".join(map(str, spec.final_seeds))
    splits = ", ".join(map(str, spec.split_seeds))
    tuning = ", ".join(map(str, spec.tuning_seeds))
    lines = [
        f"Each method tuned with {options.trials} trials × {spec.base.train.epochs} epochs "
        f"({options.searcher}) on validation classes, per class split; its best trial among "
        f"those that trained all {spec.base.train.epochs} epochs re-trained with seeds {seeds} "
        f"(disjoint from the tuning seed {tuning}) and evaluated on the split's test classes. "
        f"Class splits: {splits}.",
    ]
    if spec.splits > 1:
        lines.append(
            f"Mean ± 95% CI (Student t) over {spec.splits} class splits, each split's seeds "
            "averaged first: the interval covers the class split and the tuning outcome as well "
            "as the training seed. Paired tests pair the splits."
        )
    else:
        lines.append(
            "Mean ± 95% CI (Student t) over the re-training seeds. With one class split and one "
            "tuning run per method, the interval covers the training seed only: the result is "
            "conditional on this split and this tuning outcome. Paired tests pair the seeds."
        )
    lines.append(
        f"Primary metric: {spec.primary} (tuned as {spec.metric}); the other metrics are "
        "secondary. Collapsed re-trainings are evaluated and averaged in; failed ones have no "
        "metric, and n says how many units remain."
    )
    return lines


def render_markdown(result: CompareResult, spec: CompareSpec, *, indicative: bool) -> str:
    splits = f", {spec.splits} class splits" if spec.splits > 1 else ""
    lines = [
        f"# Comparison on {spec.base.dataset.name} (test classes, {spec.seeds} re-training "
        f"seeds{splits})",
        "",
        *(line for text in caption(result, spec) for line in (text, "")),
    ]
    if indicative:
        lines += [
            "> Quick preset: few trials, epochs and seeds. Its p-values are indicative only.",
            "",
        ]
    ordered = [spec.primary, *(m for m in EVALUATION_METRICS if m != spec.primary)]
    names = [f"{m} (primary)" if m == spec.primary else m for m in ordered]
    header = ["method", "runs", "collapsed", "failed", "n", *names]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in result.table.iterrows():
        cells = [str(row["method"]), str(row["runs"]), str(row["collapsed"]), str(row["failed"])]
        cells.append(f"{row[f'{spec.primary}_n']} {row['unit']}s")
        if row.get("splits_without_winner", 0):
            note = (
                f"no trial completed its budget on {row['splits_without_winner']} of "
                f"{spec.splits} split(s)"
            )
            if row["runs"] == 0:
                cells += [note] + ["–"] * (len(ordered) - 1)
                lines.append("| " + " | ".join(cells) + " |")
                continue
            cells[0] += f" ({note})"
        cells += [mean_ci(row[f"{m}_mean"], row[f"{m}_ci95"]) for m in ordered]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Tuning: per method and split, the chosen trial, the epochs it trained, its validation "
        f"{spec.metric} (what it was chosen on) beside the mean of its re-trainings, and the "
        "budget the sweep spent.",
        "",
        "| method | split | chosen trial | epochs | tuning score | re-trained val | trials | "
        "trial-epochs | searcher | dimensions |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in result.tuning.iterrows():
        chosen = "none (no trial completed its budget)"
        if not pd.isna(row["chosen_trial"]):
            chosen = str(row["chosen_trial"])
        epochs = "–" if pd.isna(row["chosen_epochs"]) else str(int(row["chosen_epochs"]))
        lines.append(
            f"| {row['method']} | {row['split']} | {chosen} | {epochs} | "
            f"{_number(row['tuning_score'])} | {_number(row['retrained_val'])} | {row['trials']} | "
            f"{row['trial_epochs']} | {row['searcher']} | {row['dimensions']} |"
        )
    counts = [c for c in map(on_test, COUNT_KEYS) if c in result.runs]
    if counts and not result.runs.empty:
        pairs = result.runs[counts[0]].dropna()
        accepts = result.runs[counts[-1]].dropna()
        if not pairs.empty:
            lines += [
                "",
                f"Verification metrics from {_span(pairs)} test pairs per run; TAR@FAR=1e-3 "
                f"rests on {_span(accepts)} false accepts.",
            ]
    if not result.comparisons.empty:
        unit = str(result.comparisons["unit"].iloc[0])
        lines += [
            "",
            f"Paired by {unit}: scheduler − baseline (paired t-test; Holm-Bonferroni adjusted "
            f"over the {int((result.comparisons['role'] == 'primary').sum())} comparisons of the "
            "primary metric; Wilcoxon signed-rank when n ≥ 6). A constant difference has no "
            "test.",
            "",
            "| scheduler | baseline | metric | difference ± 95% CI | n | t-test p | Holm p | "
            "Wilcoxon p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, row in result.comparisons.iterrows():
            metric = f"{row['metric']} ({row['role']})"
            difference = mean_ci(row["mean_difference"], row["ci95"], signed=True)
            t_p = "constant" if row["constant"] else _p(row["t_test_p"])
            lines.append(
                f"| {row['scheduler']} | {row['baseline']} | {metric} | {difference} | "
                f"{row['pairs']} | {t_p} | {_p(row['holm_p'])} | {_p(row['wilcoxon_p'])} |"
            )
    return "\n".join(lines) + "\n"


def _span(values: pd.Series) -> str:
    """``1,124,250``, or ``1,000–2,000`` when the runs differ."""
    low, high = int(values.min()), int(values.max())
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _number(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.4f}"


def _p(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3g}"
