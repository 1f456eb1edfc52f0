"""What an ablation leaves in its output directory: runs, cells and main effects as CSV,
``table.md``, and the plots. The numbers are :class:`~.run.AblationResult`'s; this module writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from margin_tune.pipeline.analysis.plots import cell_bars, epoch_curve_files, main_effect_plot
from margin_tune.pipeline.analysis.tables import mean_ci
from margin_tune.pipeline.jobs.ablate.grid import AblationGrid
from margin_tune.pipeline.jobs.ablate.run import AblationResult
from margin_tune.trainables.config import Config
from margin_tune.trainables.metric_names import EASY_RATIO, MARGIN


def write_ablation(
    result: AblationResult, grid: AblationGrid, base: Config, out: Path
) -> list[Path]:
    """runs.csv, cells.csv, main_effects.csv, table.md and the plots; returns their paths."""
    files = [out / "runs.csv", out / "cells.csv", out / "main_effects.csv", out / "table.md"]
    result.runs.to_csv(files[0], index=False)
    result.cells.to_csv(files[1], index=False)
    result.effects.to_csv(files[2], index=False)
    files[3].write_text(render_markdown(result, grid, base), encoding="utf-8")
    files.append(cell_bars(result.cells, grid.metric, out / "cells.png"))
    files.append(main_effect_plot(result.effects, grid.metric, out / "main_effects.png"))
    # Best cell first: a grid of more than a dozen cells draws its best dozen.
    ranked = result.cells.sort_values("rank", na_position="last")["cell"]
    histories = {cell: result.histories[cell] for cell in ranked if cell in result.histories}
    files += epoch_curve_files(
        histories,
        {
            MARGIN: "margin μ per cell (seed 0)",
            EASY_RATIO: "easy-triplet ratio per cell (seed 0)",
            grid.metric: f"{grid.metric} per cell (seed 0)",
        },
        out / "cells",
    )
    return files


def render_markdown(result: AblationResult, grid: AblationGrid, base: Config) -> str:
    metric = grid.metric
    paths = grid.factor_paths
    lines = [
        f"# Ablation `{grid.name}` on {base.dataset.name}: {metric}",
        "",
        f"{len(grid.cells)} cells × {grid.seeds} training seeds (0..{grid.seeds - 1}), "
        f"{base.train.epochs} epochs each, class split {base.dataset.split_seed}; no early "
        f"stopping. Mean ± 95% CI over seeds (Student t); collapsed and failed runs are counted, "
        f"not averaged in. Ran in {result.wall_seconds:.0f} s.",
        "",
    ]
    header = ["rank", *paths, "runs", "collapsed", "failed", metric, "n"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in result.cells.sort_values("rank", na_position="last").iterrows():
        cells = ["–" if pd.isna(row["rank"]) else str(int(row["rank"]))]
        cells += ["" if _missing(row[path]) else str(row[path]) for path in paths]
        cells += [str(row["runs"]), str(row["collapsed"]), str(row["failed"])]
        cells += [mean_ci(row[f"{metric}_mean"], row[f"{metric}_ci95"]), str(row[f"{metric}_n"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Main effects: per seed, the mean over the cells at a level (a nested factor: over the "
        "cells where it varies); then mean ± 95% CI over seeds. Effect: level mean − mean of "
        "the factor's levels.",
        "",
        f"| factor | level | cells | {metric} | seeds | effect |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in result.effects.iterrows():
        lines.append(
            f"| {row['factor']} | {row['level']} | {row['cells']} | "
            f"{mean_ci(row['mean'], row['ci95'])} | {row['seeds']} | "
            f"{mean_ci(row['effect'], float('nan'), signed=True)} |"
        )
    return "\n".join(lines) + "\n"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))
