"""``margin_tune.tune``: one sweep over a search space, on Ray Tune, recorded in MLflow.

The input is checked (:func:`_prepare`) with what :mod:`~margin_tune.pipeline.sweep.plan`
imports; Ray then starts on its thread, and the run's own modules (Ray Tune, MLflow's client,
pandas: :mod:`~margin_tune.pipeline.sweep.tuner`, the tracker, a warm start's reader) are
imported in :func:`run_planned` and where a warm start is read, meanwhile.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from margin_tune.pipeline.api.config import (
    ConfigLike,
    Overrides,
    resolve_config,
    sweep_options,
    with_default_storage,
)
from margin_tune.pipeline.api.dry_run import DryRun, time_one_epoch
from margin_tune.pipeline.outputs.folders import (
    SPACE_COPY,
    check_output_dir,
    default_out,
    new_output_dir,
    write_yaml,
)
from margin_tune.pipeline.outputs.manifest import manifest_options, write_manifest
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.plan import SweepOptions, SweepPlan, plan_sweep, sweep_cluster
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import config_from_dict

if TYPE_CHECKING:
    from margin_tune.pipeline.sweep.tuner import SweepResult


def tune(
    space: str | Path,
    *,
    trials: int,
    config: ConfigLike = None,
    overrides: Overrides = (),
    out: str | Path | None = None,
    warm_start: str | Path | None = None,
    warm_start_mode: str = "add",
    **options: Any,
) -> SweepResult:
    """Run one sweep: ``trials`` trials of ``space`` over the base ``config``.

    Args:
        space: a search-space YAML, or a packaged space's name (``dams``, ``constant``, …).
        trials: the budget.
        config, overrides: the base trial config, as :func:`~margin_tune.train` takes it.
        out: a new or empty output directory (default ``runs/<space>-<time>``).
        warm_start: an earlier sweep (its sweep id in this store and experiment, or its
            ``tune`` output directory) whose completed trials seed the study as finished
            observations, costing none of ``trials`` (see
            :mod:`margin_tune.pipeline.sweep.warm_start`).
        warm_start_mode: ``add`` (default): every usable earlier trial as a finished one,
            free; ``enqueue``: the best few run first here, in place of TPE's random start-up,
            and spend the budget.
        options: any field of :class:`~margin_tune.pipeline.sweep.plan.SweepOptions`:
            ``searcher``, ``seed``, ``concurrency``, ``tracking_uri``, ``experiment``,
            ``address``, ``early_stopping``, ``storage``, ``cpus_per_trial``, ...

    Returns:
        The trials as a DataFrame (``result.trials``), the best trial's row (``result.best``)
        and config (``result.best_config``), per-trial histories, the sweep's MLflow run id.
        A sweep in which no trial trained its budget returns with ``best`` empty and its
        errors in ``result.errors``; it raises only on bad input.

    Raises:
        ConfigError: bad input, before Ray, MLflow or any file starts.
    """
    plan = _prepare(space, trials, config, overrides, out, options, warm_start, warm_start_mode)
    base, search, chosen, directory = plan.base, plan.space, plan.options, plan.out
    with new_output_dir(directory), sweep_cluster(chosen):
        write_yaml(directory / "config.yaml", base.to_dict())
        assert search.source is not None
        shutil.copyfile(search.source, directory / SPACE_COPY)
        write_manifest(
            directory,
            "tune",
            {
                "name": plan.name,
                "space_name": search.name,
                "sweep_id": plan.sweep_id,
                "base": base.to_dict(),
                "options": dataclasses.asdict(chosen),
                # What a later --warm-start DIR compares its own data with.
                "dataset_fingerprint": plan.dataset.fingerprint(),
                **(
                    {"warm_start": plan.warm_start.to_data()} if plan.warm_start is not None else {}
                ),
            },
        )
        return run_planned(plan)


def plan_tune(
    space: str | Path,
    *,
    trials: int,
    config: ConfigLike = None,
    overrides: Overrides = (),
    out: str | Path | None = None,
    warm_start: str | Path | None = None,
    warm_start_mode: str = "add",
    **options: Any,
) -> DryRun:
    """What :func:`tune` would run, checked as it checks it, with one epoch timed here;
    nothing is written and Ray is not started (``margin-tune tune --dry-run``)."""
    plan = _prepare(space, trials, config, overrides, out, options, warm_start, warm_start_mode)
    epochs = plan.base.train.epochs
    return DryRun(
        "tune",
        plan.base,
        {"trials": trials, "epochs": epochs, "trial_epochs": trials * epochs},
        concurrency=min(plan.options.concurrency, trials),
        epoch_seconds=time_one_epoch(plan.base, plan.dataset),
        spaces={plan.space.name: plan.space},
    )


def _prepare(
    space: str | Path,
    trials: int,
    config: ConfigLike,
    overrides: Overrides,
    out: str | Path | None,
    options: dict[str, Any],
    warm_start: str | Path | None = None,
    warm_start_mode: str = "add",
) -> SweepPlan:
    """Everything checked before a sweep starts: config, space, options, output directory,
    the warm start's trials, a trial at every bound of the space."""
    base = resolve_config(config, overrides)
    search = load_space(space, base)
    directory = Path(out) if out is not None else default_out(search.name)
    chosen = with_default_storage(sweep_options(trials, options), directory)
    check_output_dir(directory)
    if options.get("population") and "searcher" in options:
        raise ConfigError(
            "--searcher",
            "population-based training chooses its configs by copying and perturbing its "
            "members, and Ray runs it without a search algorithm; leave --searcher out",
        )
    if warm_start is not None and chosen.population:
        raise ConfigError("--warm-start", "seeds a searcher's study; not with --population")
    if warm_start is not None and chosen.objectives:
        raise ConfigError(
            "--warm-start",
            "seeds the study with one metric's values; not with --objectives",
        )
    warm = None
    if warm_start is not None:
        from margin_tune.pipeline.sweep.warm_start import load_warm_start  # reads MLflow

        warm = load_warm_start(
            str(warm_start),
            search,
            chosen.searcher,
            experiment=chosen.experiment,
            tracking_uri=chosen.tracking_uri,
            mode=warm_start_mode,
            trials=chosen.trials,
        )
    return plan_sweep(search.name, base, search, chosen, directory, warm_start=warm)


def resume_tune(out: Path, manifest: dict[str, Any], address: str | None = None) -> SweepResult:
    """Continue the sweep ``out``'s manifest describes (the caller holds its lock)."""
    base = config_from_dict(manifest["base"])
    search = dataclasses.replace(load_space(out / SPACE_COPY, base), name=manifest["space_name"])
    options = SweepOptions(**manifest_options(manifest))
    if address:
        options = dataclasses.replace(options, address=address)
    saved, warm = manifest.get("warm_start"), None
    if saved:
        from margin_tune.pipeline.sweep.warm_start import WarmStart

        warm = WarmStart.from_data(saved, search)
    plan = plan_sweep(
        manifest["name"], base, search, options, out, sweep_id=manifest["sweep_id"], warm_start=warm
    )
    with sweep_cluster(options):
        return run_planned(plan)


def run_planned(plan: SweepPlan) -> SweepResult:
    """Run a planned sweep inside the caller's Ray session; write its table and plots.

    The modules the run needs are imported here, not with this module: a command that checked
    its input and started Ray on its thread (:func:`~margin_tune.pipeline.sweep.plan.sweep_cluster`)
    imports them while Ray comes up.
    """
    from margin_tune.pipeline.sweep.tuner import record_sweep_outputs, run_sweep
    from margin_tune.pipeline.tracking.tracker import Tracker

    with Tracker(plan.options.tracking_uri, plan.options.experiment) as tracker:
        result = run_sweep(plan, tracker)
        record_sweep_outputs(result, tracker)
    return result
