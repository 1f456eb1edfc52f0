"""What a comparison leaves in its output directory: the tables as CSV, ``table.md`` with its
caption, and the plots. The numbers are :class:`~.run.CompareResult`'s; this module only writes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from margin_tune.pipeline.analysis.plots import (
    comparison_bars,
    embedding_map,
    epoch_curve_files,
    roc_plot,
)
from margin_tune.pipeline.analysis.tables import mean_ci, p_value, score
from margin_tune.pipeline.jobs.compare.run import CompareResult
from margin_tune.pipeline.jobs.compare.spec import CompareSpec
from margin_tune.pipeline.sweep.callback import path_slug, run_name
from margin_tune.trainables.metric_names import (
    COUNT_KEYS,
    EASY_RATIO,
    MARGIN,
    best_mode,
    metrics_of,
    on_test,
)
from margin_tune.trainables.metrics.views import FAR_GRID


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
    measured = metrics_of(result.runs.columns)
    files.append(comparison_bars(result.table, measured, out / "test_metrics.png"))
    ranked = best_methods(result, spec)  # legends list the best method first
    files += epoch_curve_files(
        method_labels(result, ranked),
        {
            MARGIN: "margin μ per epoch, each method's chosen config (first re-training)",
            EASY_RATIO: "easy-triplet ratio per epoch (first re-training)",
        },
        out / "final",
    )
    roc = roc_plot(
        {
            method: [
                views.tar
                for split_views in result.views.values()
                for (name, _), views in split_views.items()
                if name == method
            ]
            for method in ranked
        },
        FAR_GRID,
        "test ROC: mean over re-trainings" + (" and splits" if spec.splits > 1 else ""),
        out / ROC_FILE,
    )
    if roc is not None:
        files.append(roc)
    return files


#: The comparison's ROC curves, and the folder of its re-trainings' embedding maps.
ROC_FILE, MAPS_DIR = "roc.png", "maps"


def best_methods(result: CompareResult, spec: CompareSpec) -> list[str]:
    """The methods, best first by the primary metric's mean (what legends list first)."""
    column = f"{spec.primary}_mean"
    if result.table.empty or column not in result.table:
        return list(spec.methods)
    ordered = result.table.sort_values(
        column, ascending=best_mode(spec.primary) == "min", na_position="last"
    )
    return [str(method) for method in ordered["method"]]


def method_labels(result: CompareResult, methods: list[str]) -> dict[str, pd.DataFrame]:
    """Each method's first re-training history, labelled by the method and its chosen config
    (``constant: constant μ0=0.25 lr=1e-03``), in ``methods``' order."""
    chosen = next(iter(result.best_configs.values()), {})
    labelled = {}
    for method in methods:
        if method not in result.final_histories:
            continue
        name = run_name(chosen[method]) if method in chosen else ""
        label = name if name.split(" ")[0] == method else f"{method}: {name}".rstrip(": ")
        labelled[label] = result.final_histories[method]
    return labelled


def write_embedding_maps(result: CompareResult, out: Path) -> dict[str, Path]:
    """One t-SNE map of test samples per measured re-training, in ``maps/``; by run id."""
    if not any(result.views.values()):
        return {}
    folder = out / MAPS_DIR
    folder.mkdir(exist_ok=True)
    several = len(result.views) > 1
    written = {}
    for row in result.runs.itertuples():
        views = result.views.get(int(row.split), {}).get((str(row.method), int(row.seed)))
        if views is None:
            continue
        prefix = f"split{row.split}_" if several else ""
        classes = len(set(views.map_labels.tolist()))
        written[str(row.run_id)] = embedding_map(
            views.map_xy,
            views.map_labels,
            result.class_names,
            f"{row.method}, re-training seed {row.seed}: t-SNE of {len(views.map_labels)} test "
            f"samples, {classes} classes (split {row.split})",
            folder / f"{prefix}{path_slug(str(row.method))}_seed{row.seed}.png",
        )
    return written


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
    ordered = [spec.primary, *(m for m in metrics_of(result.runs.columns) if m != spec.primary)]
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
            f"{score(row['tuning_score'])} | {score(row['retrained_val'])} | {row['trials']} | "
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
            t_p = "constant" if row["constant"] else p_value(row["t_test_p"])
            lines.append(
                f"| {row['scheduler']} | {row['baseline']} | {metric} | {difference} | "
                f"{row['pairs']} | {t_p} | {p_value(row['holm_p'])} | "
                f"{p_value(row['wilcoxon_p'])} |"
            )
    return "\n".join(lines) + "\n"


def _span(values: pd.Series) -> str:
    """``1,124,250``, or ``1,000–2,000`` when the runs differ."""
    low, high = int(values.min()), int(values.max())
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"
