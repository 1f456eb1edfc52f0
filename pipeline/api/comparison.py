"""``margin_tune.compare``: the main job. Every method tuned alike on validation classes,
re-trained over seeds, compared on test classes.

Before anything runs, the output directory gets a manifest with the comparison as plain data
(base config, methods and their spaces, copied beside it, budget, seeds), the options and the
ids of the comparison's and each sweep's MLflow runs: all ``resume`` needs to continue it.

The input is checked with :mod:`~margin_tune.pipeline.jobs.compare.plan` and the sweep's plan;
the protocol's modules (Ray Tune, MLflow, pandas) are imported in :func:`run_comparison`, once
Ray is starting on its thread (:func:`~margin_tune.pipeline.sweep.plan.sweep_cluster`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from margin_tune.pipeline.api.config import Overrides, sweep_options, with_default_storage
from margin_tune.pipeline.api.dry_run import DryRun, time_one_epoch
from margin_tune.pipeline.jobs.compare.plan import check_split_layout, method_options, split_config
from margin_tune.pipeline.jobs.compare.spec import (
    SPACES_DIR,
    CompareSpec,
    load_compare_spec,
    spec_data,
    spec_from_data,
)
from margin_tune.pipeline.outputs.folders import (
    BASE_CONFIG,
    check_output_dir,
    default_out,
    new_output_dir,
    write_yaml,
)
from margin_tune.pipeline.outputs.manifest import manifest_options, write_manifest
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep, sweep_cluster
from margin_tune.pipeline.tracking.vocabulary import (
    COMPARISON_ARTIFACTS,
    MAP_ARTIFACT,
    REGISTRY_ERROR_TAG,
)
from margin_tune.trainables.data import Samples, load_dataset
from margin_tune.trainables.errors import ConfigError

_logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from margin_tune.pipeline.jobs.compare.run import CompareResult


def compare(
    spec: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: Overrides = (),
    trials: int | None = None,
    out: str | Path | None = None,
    register_model: str | None = None,
    **options: Any,
) -> CompareResult:
    """Run a comparison: the spec's methods tuned, re-trained and tested.

    Args:
        spec: a ``compare.yaml`` (see the README); with ``preset``, its keys win.
        preset: a packaged comparison (``quick``, ``paper``).
        overrides: dotted values over the base trial config.
        trials: per sweep; default the spec's.
        out: a new or empty output directory (default ``runs/compare-<time>``).
        register_model: a name in the MLflow Model Registry: the winning method's best
            re-training by validation gets a new version of it, alias ``champion``.
        options: fields of :class:`~margin_tune.pipeline.sweep.plan.SweepOptions`
            (``searcher`` defaults to the spec's).

    Returns:
        The tables as DataFrames: ``table`` (per method, test metrics mean ± CI), ``comparisons``
        (paired tests), ``tuning`` (what each sweep chose), ``runs`` (one row per re-training);
        and ``methods_without_winner``, the methods no trial of which trained its budget on
        some split (the CLI exits 1 for them). Tables and plots are in ``result.out``.

    Raises:
        ConfigError: bad input, before Ray, MLflow or any file starts.
    """
    check_model_name(register_model)
    loaded, chosen, directory, _ = _prepare(spec, preset, overrides, trials, out, options)
    manifest = {
        "comparison_id": uuid.uuid4().hex[:12],
        "sweep_ids": {
            str(split): {method: uuid.uuid4().hex[:12] for method in loaded.methods}
            for split in loaded.split_seeds
        },
        "spec": spec_data(loaded),
        "options": dataclasses.asdict(chosen),
        "indicative": preset == "quick",
        "split_seeds": list(loaded.split_seeds),
        "tuning_seeds": list(loaded.tuning_seeds),
        "retraining_seeds": list(loaded.final_seeds),
        "register_model": register_model,
    }
    with new_output_dir(directory), sweep_cluster(chosen):
        write_yaml(directory / BASE_CONFIG, loaded.base.to_dict())
        (directory / SPACES_DIR).mkdir()
        for method, space in loaded.spaces.items():
            assert space.source is not None
            shutil.copyfile(space.source, directory / SPACES_DIR / f"{method}.yaml")
        write_manifest(directory, "compare", manifest)
        return run_comparison(loaded, chosen, directory, manifest)


def check_model_name(name: str | None) -> None:
    """A registered model's name: not empty, and free of what a ``models:/`` URI splits on."""
    if name is None:
        return
    if not name.strip() or any(mark in name for mark in ("/", ":")):
        raise ConfigError(
            "--register-model", f"a model name must be non-empty, without '/' or ':', got {name!r}"
        )


def plan_compare(
    spec: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: Overrides = (),
    trials: int | None = None,
    out: str | Path | None = None,
    register_model: str | None = None,
    **options: Any,
) -> DryRun:
    """What :func:`compare` would run, checked as it checks it, with one epoch timed here;
    nothing is written and Ray is not started (``margin-tune compare --dry-run``)."""
    check_model_name(register_model)
    loaded, chosen, _, dataset = _prepare(spec, preset, overrides, trials, out, options)
    epochs, methods = loaded.base.train.epochs, len(loaded.methods)
    runs = loaded.splits * methods * (chosen.trials + loaded.seeds)
    return DryRun(
        "compare",
        loaded.base,
        {
            "splits": loaded.splits,
            "methods": methods,
            "trials": chosen.trials,
            "seeds": loaded.seeds,
            "epochs": epochs,
            "runs": runs,
            "trial_epochs": runs * epochs,
        },
        concurrency=chosen.concurrency,
        epoch_seconds=time_one_epoch(loaded.base, dataset),
        spaces={
            method
            if method not in loaded.populations
            else f"{method} [a population of {chosen.trials}, perturbation interval "
            f"{loaded.populations[method]}; its learned schedule replayed]": space
            for method, space in loaded.spaces.items()
        },
    )


def _prepare(
    spec: str | Path | None,
    preset: str | None,
    overrides: Overrides,
    trials: int | None,
    out: str | Path | None,
    options: dict[str, Any],
) -> tuple[CompareSpec, SweepOptions, Path, Samples]:
    """Everything checked before a comparison starts: the spec, the options, the output
    directory, the data, and every split and method's sweep planned on it."""
    if isinstance(overrides, Mapping):  # as --set strings: the spec records them so
        # JSON is YAML, so each value reads back as it was given (None as null, not "None")
        overrides = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    if options.get("objectives"):
        raise ConfigError(
            "--objectives",
            "compare ranks its methods on one primary metric (compare.yaml's metric, then "
            "tested on test classes); searching several objectives is margin-tune tune's",
        )
    loaded = load_compare_spec(Path(spec) if spec is not None else None, preset, list(overrides))
    chosen = sweep_options(
        loaded.trials if trials is None else trials, {"searcher": loaded.searcher, **options}
    )
    directory = Path(out) if out is not None else default_out("compare")
    chosen = with_default_storage(chosen, directory)
    check_output_dir(directory)
    dataset = load_dataset(loaded.base.dataset)
    for split in loaded.split_seeds:  # data, every split and sizes, before anything starts
        for method, space in loaded.spaces.items():
            base = split_config(loaded.base, split)
            method_chosen = method_options(loaded, method, chosen)
            plan_sweep(method, base, space, method_chosen, directory / method, dataset=dataset)
    return loaded, chosen, directory, dataset


def resume_compare(
    out: Path, manifest: dict[str, Any], address: str | None = None
) -> CompareResult:
    """Continue the comparison ``out``'s manifest describes (the caller holds its lock)."""
    check_split_layout(out, manifest)
    spec = spec_from_data(manifest["spec"], out / SPACES_DIR)
    options = SweepOptions(**manifest_options(manifest))
    if address:
        options = dataclasses.replace(options, address=address)
    with sweep_cluster(options):
        return run_comparison(spec, options, out, manifest)


def run_comparison(
    spec: CompareSpec, options: SweepOptions, out: Path, manifest: dict[str, Any]
) -> CompareResult:
    """Run (or continue) the comparison inside the caller's Ray session and write its tables.

    Its MLflow run ends FAILED when a method had no trial that trained its whole budget on
    some split: the tables are written first and show the gap.
    """
    from margin_tune.pipeline.jobs.compare.outputs import write_comparison, write_embedding_maps
    from margin_tune.pipeline.jobs.compare.registry import register_winner
    from margin_tune.pipeline.jobs.compare.run import run_compare
    from margin_tune.pipeline.sweep.callback import first_line
    from margin_tune.pipeline.tracking.tracker import Tracker

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
        # The base config beside the tables: a shared report shows what was trained.
        files.append(out / BASE_CONFIG)
        for path in files:
            tracker.log_artifact(
                result.comparison_run_id, str(path), artifact_path=COMPARISON_ARTIFACTS
            )
        for run_id, path in write_embedding_maps(result, out).items():
            tracker.log_artifact(run_id, path, file_name=MAP_ARTIFACT)
        missing = result.methods_without_winner
        name = manifest.get("register_model")
        registered = None
        if name and missing:
            # A comparison with a method that had no winner has no finding to register.
            _logger.error(
                "the winner was not registered as %r: %s had no trial that trained its budget",
                name,
                ", ".join(missing),
            )
            tracker.set_tags(
                result.comparison_run_id,
                {REGISTRY_ERROR_TAG: f"not registered: no winner for {', '.join(missing)}"},
            )
        elif name:
            try:
                registered = register_winner(tracker, name, result.table, result.runs, spec)
            except Exception as error:  # the comparison stands without it
                _logger.error("the winner was not registered as %r: %s", name, error)
                tracker.set_tags(
                    result.comparison_run_id,
                    {REGISTRY_ERROR_TAG: f"{type(error).__name__}: {first_line(error)}"},
                )
        tracker.end_run(result.comparison_run_id, "FAILED" if missing else "FINISHED")
    return dataclasses.replace(result, out=out, spec=spec, registered=registered)
