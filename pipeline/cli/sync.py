"""``margin-tune sync DIR``: make MLflow hold what Ray Tune's results in DIR hold.

The driver writes MLflow from a queue that dies with it, so a driver killed while the store was
down (or before its queue was written) leaves trial runs missing, RUNNING, or short of epochs,
while Ray Tune's results in the output directory hold every reported epoch. Every sweep already
ends with this repair; ``sync`` runs it on its own, for a directory whose command will not be
resumed or to fill another store (``--tracking-uri``) that holds the sweep's run. It only writes
trial runs, and only those that differ from the results: a second run writes nothing. It starts
no trial and needs no Ray.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.tune import ExperimentAnalysis, ResultGrid

from margin_tune.pipeline.jobs.ablate.grid import load_ablation_grid
from margin_tune.pipeline.jobs.ablate.run import ABLATION_TAGS, cell_configs
from margin_tune.pipeline.jobs.compare.plan import check_split_layout, split_config
from margin_tune.pipeline.jobs.compare.run import (
    BEST_CONFIGS_FILE,
    FINAL_DIR,
    FINAL_TAGS,
    SWEEPS_DIR,
    split_dir,
)
from margin_tune.pipeline.outputs.folders import output_lock
from margin_tune.pipeline.outputs.manifest import manifest_options, read_manifest
from margin_tune.pipeline.sweep.callback import SearchedConfig, SyncedTrial, sync_results
from margin_tune.pipeline.sweep.grid_trials import GridPointConfig
from margin_tune.pipeline.sweep.inputs import SCORED_CONTEXTS, TUNING_CONTEXTS, DatasetInputs
from margin_tune.pipeline.sweep.tuner import EXPERIMENT_DIR
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.config import Config, read_yaml
from margin_tune.trainables.data import load_dataset
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import config_from_dict

Syncer = Callable[[Path, dict[str, Any], Tracker], list[SyncedTrial]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", type=Path, metavar="DIR", help="the --out directory of tune/compare/ablate"
    )
    parser.add_argument(
        "--tracking-uri", help="the MLflow store to fill (default: the one DIR's command used)"
    )


def run(args: argparse.Namespace) -> int:
    out: Path = args.directory
    manifest = read_manifest(out, allowed=tuple(SYNCERS))
    options = manifest_options(manifest)
    with (
        output_lock(out),
        Tracker(args.tracking_uri or options["tracking_uri"], options["experiment"]) as tracker,
    ):
        synced = SYNCERS[manifest["command"]](out, manifest, tracker)
    print(f"synced {len(synced)} trial runs of {out} into {tracker.shown_uri}")
    return 0


def sync_tune(out: Path, manifest: dict[str, Any], tracker: Tracker) -> list[SyncedTrial]:
    base = config_from_dict(manifest["base"])
    parent = _sweep_run(tracker, manifest["sweep_id"])
    inputs = DatasetInputs.build(load_dataset(base.dataset), [base.dataset], TUNING_CONTEXTS)
    return _sync_experiment(
        tracker, out / EXPERIMENT_DIR, parent, SearchedConfig(base), inputs=inputs
    )


def sync_compare(out: Path, manifest: dict[str, Any], tracker: Tracker) -> list[SyncedTrial]:
    check_split_layout(out, manifest)
    base = config_from_dict(manifest["spec"]["base"])
    comparison = _sweep_run(tracker, manifest["comparison_id"])
    dataset = load_dataset(base.dataset)  # one load: the splits differ only in split_seed
    synced = []
    for split_text, sweep_ids in manifest["sweep_ids"].items():
        split = int(split_text)
        directory = split_dir(out, split)
        split_base = split_config(base, split)
        searched = SearchedConfig(split_base)
        tuning = DatasetInputs.build(dataset, [split_base.dataset], TUNING_CONTEXTS)
        for method, sweep_id in sweep_ids.items():
            experiment = directory / SWEEPS_DIR / method / EXPERIMENT_DIR
            if experiment.is_dir():
                parent = _sweep_run(tracker, sweep_id)
                synced += _sync_experiment(tracker, experiment, parent, searched, inputs=tuning)
        best = directory / BEST_CONFIGS_FILE
        if best.is_file():
            points = GridPointConfig(read_yaml(best, field_name="DIR"), fixed={"split": split})
            scored = DatasetInputs.build(dataset, [split_base.dataset], SCORED_CONTEXTS)
            synced += _sync_experiment(
                tracker,
                directory / FINAL_DIR,
                comparison,
                points,
                FINAL_TAGS,
                points.run_key,
                scored,
            )
    return synced


def sync_ablate(out: Path, manifest: dict[str, Any], tracker: Tracker) -> list[SyncedTrial]:
    points = GridPointConfig(cell_configs(load_ablation_grid(out, manifest)), key="cell")
    parent = _sweep_run(tracker, manifest["ablation_id"])
    configs = [config_from_dict(config).dataset for config in points.configs.values()]
    inputs = DatasetInputs.build(load_dataset(configs[0]), configs, SCORED_CONTEXTS)
    return _sync_experiment(
        tracker, out / EXPERIMENT_DIR, parent, points, ABLATION_TAGS, points.run_key, inputs
    )


SYNCERS: dict[str, Syncer] = {"tune": sync_tune, "compare": sync_compare, "ablate": sync_ablate}


def _sweep_run(tracker: Tracker, sweep_id: str) -> str:
    run_id = tracker.find_sweep_run(sweep_id)
    if run_id is None:
        raise ConfigError(
            "--tracking-uri",
            f"{tracker.shown_uri} holds no run with margin_tune.sweep_id {sweep_id!r} in "
            "this experiment; sync fills the store the command wrote to",
        )
    return run_id


def _sync_experiment(
    tracker: Tracker,
    experiment: Path,
    parent_run_id: str,
    resolve_config: Callable[[Mapping[str, Any]], Config],
    tags: Mapping[str, str] | None = None,
    run_key: tuple[str, ...] = (),
    inputs: DatasetInputs | None = None,
) -> list[SyncedTrial]:
    """Sync one Ray Tune experiment's trials; nothing if Tune never saved its state there."""
    if not list(experiment.glob("experiment_state-*.json")):
        return []
    grid = ResultGrid(ExperimentAnalysis(str(experiment.resolve())))
    results = list(grid)  # type: ignore[call-overload]  # ResultGrid iterates via __getitem__
    return sync_results(
        tracker, parent_run_id, results, resolve_config, tags, run_key, inputs=inputs
    )
