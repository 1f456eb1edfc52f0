"""Grid trials: each value of one key × training seeds, as one Ray Tune experiment.

A comparison re-trains each method's chosen config (key ``method``) with its re-training seeds
and an ablation trains each cell (key ``cell``) with seeds 0..n−1, every trial evaluated on the
test classes at its last epoch. Both run the same way: no searcher, no early stopping, one
MLflow child run per trial found by its grid point, so a resumed grid (``Tuner.restore``) keeps
finished trials, continues the others from their last checkpoint and re-opens their runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.logger import JsonLoggerCallback

from margin_tune.pipeline.runtime.console import current
from margin_tune.pipeline.runtime.interrupts import (
    InterruptedRunError,
    fitting,
    unfinished_trial_ids,
)
from margin_tune.pipeline.sweep.callback import (
    SyncedTrial,
    TrackingCallback,
    TrialNames,
    bind_tracker,
    sync_results,
)
from margin_tune.pipeline.sweep.checkpoints import (
    KeepReadableExperimentState,
    PruneEndedTrialCheckpoints,
)
from margin_tune.pipeline.sweep.inputs import SCORED_CONTEXTS, DatasetInputs
from margin_tune.pipeline.sweep.models import log_trained_models
from margin_tune.pipeline.sweep.plan import SweepOptions
from margin_tune.pipeline.sweep.progress import TrialProgress
from margin_tune.pipeline.sweep.search_state import ResumableGrid
from margin_tune.pipeline.sweep.session import ray_ready
from margin_tune.pipeline.sweep.tuner import restored_or_new, tune_environment
from margin_tune.pipeline.sweep.warm_up import WarmEndOfRunImports
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import MEASURED_STATUSES
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples
from margin_tune.trainables.parts import added_parts, config_from_dict


class GridPointConfig:
    """A grid trial's config: the config of its ``key`` (a comparison's method, an ablation's
    cell) with the grid's training seed. Plain data, so Tune can pickle it for ``resume``.

    ``fixed`` values are the same for every trial of the grid and name it among others under
    the same parent run (a comparison's class split): they are part of each trial's config and
    of what its run is found by.
    """

    def __init__(
        self,
        configs: dict[str, dict[str, Any]],
        key: str = "method",
        fixed: Mapping[str, Any] | None = None,
    ) -> None:
        self.configs = configs
        self.key = key
        self.fixed = dict(fixed or {})

    @property
    def run_key(self) -> tuple[str, ...]:
        """What a trial's run is found by, whatever trial id Tune gives it: its grid point."""
        return (*self.fixed, self.key, "seed")

    def __call__(self, params: Any) -> Config:
        return replace(config_from_dict(self.configs[params[self.key]]), seed=int(params["seed"]))


def run_grid_trials(
    function: Callable[..., None],
    points: GridPointConfig,
    *,
    seeds: Sequence[int],
    dataset: Samples,
    options: SweepOptions,
    directory: Path,
    tracker: Tracker,
    parent_run_id: str,
    tags: Mapping[str, str],
    title: str = "grid",
    metric: str | None = None,
    log_models: bool = False,
    views: bool = False,
) -> list[SyncedTrial]:
    """Run, or continue, every (value of ``points.key``, seed in ``seeds``) under
    ``parent_run_id``.

    ``function`` is the trial (``run_final_trial``'s arguments); the experiment lives in
    ``directory``, in the order of ``points.configs``; the runs get ``tags`` beside their
    grid point. Returns the trials as their MLflow runs now hold them. ``title`` and ``metric``
    are what the progress lines call the grid and show of each ended trial; ``log_models``
    logs each measured trial's network to its run (:mod:`~margin_tune.pipeline.sweep.models`);
    ``views`` has each trial keep its test ROC curve and map in its last checkpoint
    (:func:`~margin_tune.pipeline.sweep.trainable.checkpoint_views` reads them).
    """
    ray_ready()  # the dataset goes into Ray's object store
    trainable = tune.with_resources(
        tune.with_parameters(
            function,
            configs=points.configs,
            dataset=dataset,
            cpus=options.cpus_per_trial,
            checkpoint_interval_s=options.checkpoint_interval_s,
            parts=added_parts(),
            **({"views": True} if views else {}),  # only re-trainings take it
        ),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    names = TrialNames(points, tags)
    configs = [config_from_dict(config).dataset for config in points.configs.values()]
    inputs = DatasetInputs.build(dataset, configs, SCORED_CONTEXTS)
    tuner = restored_or_new(
        directory.resolve(),
        trainable,
        lambda: tune.Tuner(
            trainable,
            param_space={
                **points.fixed,
                points.key: tune.grid_search(list(points.configs)),
                "seed": tune.grid_search(list(seeds)),
            },
            tune_config=tune.TuneConfig(
                search_alg=ResumableGrid(max_concurrent=options.concurrency),
                reuse_actors=True,
                trial_name_creator=names.name,
                trial_dirname_creator=names.dirname,
            ),
            run_config=tune.RunConfig(
                name=directory.name,
                storage_path=str(directory.resolve().parent),
                callbacks=[
                    TrackingCallback(parent_run_id, points, tags, points.run_key, inputs),
                    TrialProgress(title, len(points.configs) * len(seeds), points, metric),
                    PruneEndedTrialCheckpoints(),
                    KeepReadableExperimentState(),
                    WarmEndOfRunImports(),
                    JsonLoggerCallback(),  # result.json: what the results are read back from
                ],
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                verbose=current().ray_verbose,
            ),
        ),
    )
    with bind_tracker(tracker), tune_environment(), fitting():
        grid = tuner.fit()
    results = list(grid)  # type: ignore[call-overload]  # iterates via __getitem__
    stopped = unfinished_trial_ids(directory.resolve())
    synced = sync_results(
        tracker,
        parent_run_id,
        results,
        points,
        tags,
        points.run_key,
        interrupted=stopped,
        inputs=inputs,
    )
    if stopped:
        tracker.end_run(parent_run_id, "KILLED")
        raise InterruptedRunError()
    if log_models:
        log_trained_models(tracker, synced, dataset)
    return synced


def completed_metrics(
    status: str, last: Mapping[str, Any], columns: Iterable[str]
) -> dict[str, float]:
    """Each column's last reported value, or NaN for a failed run or one short of its epochs.

    A collapsed run was evaluated at the epoch it stopped at and counts like a completed one;
    only a failed run (an exception, a NaN loss) or one that never finished has no metric.
    """
    return {
        column: float(last[column])
        if status in MEASURED_STATUSES and last.get(column) is not None
        else float("nan")
        for column in columns
    }


#: Statuses of a grid trial that carry its test metrics.
