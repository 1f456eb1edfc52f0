"""``margin_tune.ablate``: a factorial grid × training seeds, each cell run to its full budget.

Before anything runs, the output directory gets the grid file, the base config and a manifest
with the ablation's id and options: all ``resume`` and ``sync`` need to continue it.

The input is checked with the grid, the data and every cell's trial only
(:mod:`~margin_tune.pipeline.jobs.ablate.plan`); the run's modules (Ray Tune, MLflow, pandas)
are imported in :func:`run_grid`, once Ray is starting on its thread, as for a ``tune``.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from margin_tune.pipeline.api.config import ConfigLike, Overrides, resolve_config, sweep_options
from margin_tune.pipeline.api.dry_run import DryRun, time_one_epoch
from margin_tune.pipeline.jobs.ablate.grid import (
    GRID_COPY,
    AblationGrid,
    load_ablation_grid,
    load_grid,
)
from margin_tune.pipeline.jobs.ablate.plan import plan_ablation
from margin_tune.pipeline.outputs.folders import (
    BASE_CONFIG,
    check_output_dir,
    default_out,
    new_output_dir,
    write_yaml,
)
from margin_tune.pipeline.outputs.manifest import manifest_options, write_manifest
from margin_tune.pipeline.sweep.plan import SweepOptions, sweep_cluster
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import config_from_dict

if TYPE_CHECKING:
    from margin_tune.pipeline.jobs.ablate.run import AblationResult


def ablate(
    grid: str | Path,
    *,
    config: ConfigLike = None,
    overrides: Overrides = (),
    seeds: int | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> AblationResult:
    """Run every cell of ``grid`` with ``seeds`` training seeds, on one class split.

    Args:
        grid: a grid YAML, or a packaged grid's name (``schedulers``, …).
        config, overrides: the base trial config the cells are laid over.
        seeds: training seeds per cell (default: the grid file's, else 3).
        out: a new or empty output directory (default ``runs/ablate-<grid>-<time>``).
        options: execution fields of :class:`~margin_tune.pipeline.sweep.plan.SweepOptions`
            (``concurrency``, ``tracking_uri``, ``experiment``, ``address``, …).

    Returns:
        ``runs`` (one row per trial), ``cells`` (mean ± CI per cell, ranked on validation),
        ``effects`` (main effects), per-cell histories and the MLflow run id.

    Raises:
        ConfigError: bad input, before Ray, MLflow or any file starts.
    """
    base, loaded, chosen, directory, dataset = _prepare(
        grid, config, overrides, seeds, out, options
    )
    ablation_id = uuid.uuid4().hex[:12]
    manifest = {
        "ablation_id": ablation_id,
        "grid_name": loaded.name,
        "seeds": loaded.seeds,
        "base": base.to_dict(),
        "options": dataclasses.asdict(chosen),
    }
    with new_output_dir(directory), sweep_cluster(chosen):
        write_yaml(directory / BASE_CONFIG, base.to_dict())
        assert loaded.source is not None
        shutil.copyfile(loaded.source, directory / GRID_COPY)
        write_manifest(directory, "ablate", manifest)
        return run_grid(loaded, base, dataset, chosen, directory, ablation_id)


def plan_ablate(
    grid: str | Path,
    *,
    config: ConfigLike = None,
    overrides: Overrides = (),
    seeds: int | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> DryRun:
    """What :func:`ablate` would run, checked as it checks it, with one epoch timed here;
    nothing is written and Ray is not started (``margin-tune ablate --dry-run``)."""
    base, loaded, chosen, _, dataset = _prepare(grid, config, overrides, seeds, out, options)
    epochs, runs = base.train.epochs, chosen.trials
    return DryRun(
        "ablate",
        base,
        {
            "cells": len(loaded.cells),
            "seeds": loaded.seeds,
            "epochs": epochs,
            "runs": runs,
            "trial_epochs": runs * epochs,
        },
        concurrency=min(chosen.concurrency, runs),
        epoch_seconds=time_one_epoch(base, dataset),
        cells=tuple(cell.label for cell in loaded.cells),
    )


def _prepare(
    grid: str | Path,
    config: ConfigLike,
    overrides: Overrides,
    seeds: int | None,
    out: str | Path | None,
    options: dict[str, Any],
) -> tuple[Config, AblationGrid, SweepOptions, Path, Samples]:
    """Everything checked before an ablation starts: config, grid, options, output directory,
    and every cell's trial built on the data."""
    base = resolve_config(config, overrides)
    if options.get("objectives"):
        raise ConfigError("--objectives", "an ablation runs a grid and searches nothing")
    loaded = load_grid(grid, base, seeds=seeds)
    chosen = sweep_options(len(loaded.cells) * loaded.seeds, {**options, "early_stopping": False})
    directory = Path(out) if out is not None else default_out(f"ablate-{loaded.name}")
    check_output_dir(directory)
    return base, loaded, chosen, directory, plan_ablation(loaded, base)


def resume_ablate(
    out: Path, manifest: dict[str, Any], address: str | None = None
) -> AblationResult:
    """Continue the ablation ``out``'s manifest describes (the caller holds its lock)."""
    base = config_from_dict(manifest["base"])
    grid = load_ablation_grid(out, manifest)
    options = SweepOptions(**manifest_options(manifest))
    if address:
        options = dataclasses.replace(options, address=address)
    dataset = plan_ablation(grid, base)
    with sweep_cluster(options):
        return run_grid(grid, base, dataset, options, out, manifest["ablation_id"])


def run_grid(
    grid: AblationGrid,
    base: Config,
    dataset: Samples,
    options: SweepOptions,
    out: Path,
    ablation_id: str,
) -> AblationResult:
    """Run (or continue) the ablation inside the caller's Ray session and write its tables.

    The run's modules are imported here, not with this module: see the module's docstring.
    """
    from margin_tune.pipeline.jobs.ablate.outputs import write_ablation
    from margin_tune.pipeline.jobs.ablate.run import run_ablation
    from margin_tune.pipeline.tracking.tracker import Tracker

    with Tracker(options.tracking_uri, options.experiment) as tracker:
        result = run_ablation(grid, base, dataset, options, out, tracker, ablation_id=ablation_id)
        for path in write_ablation(result, grid, base, out):
            tracker.log_artifact(result.run_id, str(path), artifact_path="ablation")
        tracker.end_run(result.run_id)
    return dataclasses.replace(result, out=out)
