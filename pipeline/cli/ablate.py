"""``margin-tune ablate``: a factorial grid × training seeds (and ``resume`` of one).

Before anything runs, the output directory gets the grid file, the base config and a manifest
with the ablation's id and options: all ``resume`` and ``sync`` need to continue it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from margin_tune.pipeline.analysis.plots import cell_bars, epoch_curve_files, main_effect_plot
from margin_tune.pipeline.analysis.tables import mean_ci
from margin_tune.pipeline.cli.flags import (
    add_config_flags,
    add_run_flags,
    default_out,
    run_options,
)
from margin_tune.pipeline.jobs.ablate.grid import (
    GRID_COPY,
    AblationGrid,
    load_ablation_grid,
    load_grid,
)
from margin_tune.pipeline.jobs.ablate.run import AblationResult, run_ablation
from margin_tune.pipeline.outputs.folders import check_output_dir, new_output_dir, write_yaml
from margin_tune.pipeline.outputs.manifest import manifest_options, write_manifest
from margin_tune.pipeline.sweep.tuner import SweepOptions, sweep_cluster
from margin_tune.pipeline.tracking.store import resolve_tracking_uri
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Dataset, load_dataset
from margin_tune.trainables.metric_names import EASY_RATIO, MARGIN
from margin_tune.trainables.parts import config_from_dict, load_config
from margin_tune.trainables.trial import Trial

#: The grid file, copied into the output directory: what ``resume`` and ``sync`` read.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument(
        "--grid", required=True, help="grid YAML, or a packaged grid's name (schedulers, …)"
    )
    parser.add_argument(
        "--seeds", type=int, help="training seeds per cell (default: the grid file's, else 3)"
    )
    add_run_flags(parser)


def run(args: argparse.Namespace) -> int:
    base = load_config(args.config, args.overrides)
    grid = load_grid(args.grid, base, seeds=args.seeds)
    options = run_options(args, len(grid.cells) * grid.seeds, early_stopping=False)
    # Pin the store: a resume, from another directory, must log to the same one.
    options = dataclasses.replace(options, tracking_uri=resolve_tracking_uri(options.tracking_uri))
    out = args.out or default_out(f"ablate-{grid.name}")
    check_output_dir(out)
    dataset = plan_ablation(grid, base)
    ablation_id = uuid.uuid4().hex[:12]
    manifest = {
        "ablation_id": ablation_id,
        "grid_name": grid.name,
        "seeds": grid.seeds,
        "base": base.to_dict(),
        "options": dataclasses.asdict(options),
    }
    with new_output_dir(out), sweep_cluster(options):
        write_yaml(out / "base_config.yaml", base.to_dict())
        assert grid.source is not None
        shutil.copyfile(grid.source, out / GRID_COPY)
        write_manifest(out, "ablate", manifest)
        return execute(grid, base, dataset, options, out, ablation_id)


def plan_ablation(grid: AblationGrid, base: Config) -> Dataset:
    """Load the data and build every cell's trial: sizes that do not fit fail here, not in Ray."""
    dataset = load_dataset(base.dataset)
    for cell in grid.cells:
        Trial(cell.config, dataset=dataset)
    return dataset


def resume_from_manifest(out: Path, manifest: dict[str, Any], address: str | None) -> int:
    base = config_from_dict(manifest["base"])
    grid = load_ablation_grid(out, manifest)
    options = SweepOptions(**manifest_options(manifest))
    if address:
        options = dataclasses.replace(options, address=address)
    dataset = plan_ablation(grid, base)
    with sweep_cluster(options):
        return execute(grid, base, dataset, options, out, manifest["ablation_id"])


def execute(
    grid: AblationGrid,
    base: Config,
    dataset: Dataset,
    options: SweepOptions,
    out: Path,
    ablation_id: str,
) -> int:
    """Run (or continue) the ablation inside the caller's Ray session and print its tables."""
    with Tracker(options.tracking_uri, options.experiment) as tracker:
        result = run_ablation(grid, base, dataset, options, out, tracker, ablation_id=ablation_id)
        for path in write_ablation(result, grid, base, out):
            tracker.log_artifact(result.run_id, str(path), artifact_path="ablation")
        tracker.end_run(result.run_id)
    print((out / "table.md").read_text())
    print(f"wrote {out}; ablation run {result.run_id} in {tracker.shown_uri}")
    return 0


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
    files += epoch_curve_files(
        result.histories,
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
