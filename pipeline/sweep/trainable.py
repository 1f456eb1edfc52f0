"""The Ray Tune function trainable: a thin wrapper around ``margin_tune.trainables.trial.Trial``.

It lays the searched values over the sweep's base config, resumes from Tune's checkpoint when
there is one, and reports every epoch, with a checkpoint when ``checkpoint_interval_s`` has
passed since the last one and at the last epoch. Nothing here talks to MLflow: the driver logs
what Tune receives, so trials never wait on (or need access to) the store.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune

from margin_tune.pipeline.search.space import overlay
from margin_tune.pipeline.sweep.plan import DEFAULT_CHECKPOINT_INTERVAL_S
from margin_tune.pipeline.sweep.population import SCHEDULE_KEY, schedule_row
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Dataset
from margin_tune.trainables.metric_names import COLLAPSED, MARGIN, on_test
from margin_tune.trainables.metrics.views import EmbeddingViews
from margin_tune.trainables.parts import config_from_dict, restore_parts
from margin_tune.trainables.trial import EpochReport, Trial

CHECKPOINT_FILE = "trial.pt"
#: Beside it in a re-training's last checkpoint: the network's test ROC curve and 2-D map.
VIEWS_FILE = "test_views.npz"


class CheckpointClock:
    """Decides which epochs carry a checkpoint: the last, one every ``interval_s``, and, with
    ``every_epochs``, every epoch that is a multiple of it: population-based training exploits
    at those epochs, and a trial copied from another must find that trial's checkpoint of the
    same epoch, not an older one."""

    def __init__(self, interval_s: float, last_epoch: int, every_epochs: int | None = None) -> None:
        self.interval_s = interval_s
        self.last_epoch = last_epoch
        self.every_epochs = every_epochs
        self._last = time.monotonic()

    def due(self, epoch: int) -> bool:
        now = time.monotonic()
        on_interval = self.every_epochs is not None and epoch % self.every_epochs == 0
        if epoch >= self.last_epoch or on_interval or now - self._last >= self.interval_s:
            self._last = now
            return True
        return False


def trial_config(base: dict[str, Any], params: dict[str, Any], cpus: float) -> Config:
    """The config one trial runs: base + searched values, one torch thread per CPU of the trial."""
    threads = max(1, int(cpus))
    return config_from_dict(overlay(base, {**params, "train.num_threads": threads}))


def run_tune_trial(
    params: dict[str, Any],
    *,
    base: dict[str, Any],
    dataset: Dataset,
    cpus: float,
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
    parts: Mapping[str, Mapping[str, Any]] | None = None,
    checkpoint_every_epochs: int | None = None,
    track_schedule: bool = False,
) -> None:
    """Function trainable for ``tune.with_parameters``: ``dataset`` comes from the object store,
    ``parts`` are what the driver's script registered (:func:`added_parts`);
    ``checkpoint_every_epochs``: population-based training's perturbation interval, and with
    ``track_schedule`` each checkpoint keeps the member's schedule and lineage
    (:mod:`~margin_tune.pipeline.sweep.population`)."""
    restore_parts(parts or {})
    config = trial_config(base, params, cpus)
    trial = Trial(config, dataset=dataset)
    state = _resume(trial)
    clock = CheckpointClock(checkpoint_interval_s, config.train.epochs, checkpoint_every_epochs)
    if not track_schedule:
        trial.run(lambda epoch: _report(epoch, epoch.metrics, clock.due(epoch.epoch)))
        return
    # A copy of another member starts with that member's schedule: its lineage.
    schedule = list(state.get(SCHEDULE_KEY, [])) if state is not None else []
    trial_id = tune.get_context().get_trial_id() or ""

    def report(epoch: EpochReport) -> None:
        margin = epoch.metrics[MARGIN]
        schedule.append(schedule_row(epoch.epoch, margin, config, trial_id))
        with_schedule = EpochReport(
            epoch.epoch,
            epoch.metrics,
            lambda: {**epoch.checkpoint(), SCHEDULE_KEY: [dict(row) for row in schedule]},
        )
        _report(with_schedule, epoch.metrics, clock.due(epoch.epoch))

    trial.run(report)


def _resume(trial: Trial) -> dict[str, Any] | None:
    """Continue from Tune's checkpoint after a failure, a restore, a node loss or (in a
    population) a copy of a better member; the checkpoint's state, None without one."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state: dict[str, Any] = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
    trial.load_state_dict(state)
    return state


def checkpoint_views(checkpoint: tune.Checkpoint | None) -> EmbeddingViews | None:
    """The test views a re-training's last checkpoint holds (``views=True``), else None."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        path = Path(directory) / VIEWS_FILE
        return EmbeddingViews.load(path) if path.is_file() else None


def _report(
    epoch: EpochReport,
    metrics: dict[str, float],
    checkpoint: bool,
    extra: Mapping[str, EmbeddingViews] | None = None,
) -> None:
    if not checkpoint:
        tune.report(dict(metrics))
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(epoch.checkpoint(), Path(directory) / CHECKPOINT_FILE)
        for name, views in (extra or {}).items():
            views.save(Path(directory) / name)
        tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(directory))


def run_final_trial(
    params: dict[str, Any],
    *,
    configs: dict[str, dict[str, Any]],
    dataset: Dataset,
    cpus: float,
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
    key: str = "method",
    parts: Mapping[str, Mapping[str, Any]] | None = None,
    views: bool = False,
) -> None:
    """Train a grid point's config with one training seed; the last epoch adds test_*.

    ``params`` holds ``key`` and ``seed`` (a grid point); ``configs`` maps each value of ``key``
    (a comparison's method, an ablation's cell) to its config. Test classes are evaluated once,
    after the last epoch: the budget's last, or the epoch a collapse stopped the run at. A
    collapsed network is an outcome of its method, measured and averaged in like any other.
    With ``views``, the last checkpoint also holds the network's ROC curve and t-SNE map of the
    test classes (:data:`VIEWS_FILE`), computed here, in parallel with the other trials.
    """
    restore_parts(parts or {})
    config = trial_config(configs[params[key]], {"seed": params["seed"]}, cpus)
    trial = Trial(config, dataset=dataset)
    _resume(trial)
    clock = CheckpointClock(checkpoint_interval_s, config.train.epochs)

    def report(epoch: EpochReport) -> None:
        metrics = dict(epoch.metrics)
        last = epoch.epoch == config.train.epochs or bool(epoch.metrics.get(COLLAPSED))
        extra: dict[str, EmbeddingViews] = {}
        if last:
            embeddings = trial.embed_test()
            metrics.update({on_test(k): v for k, v in trial.evaluate_test(embeddings).items()})
            if views:
                extra[VIEWS_FILE] = trial.test_views(embeddings)
        # The network a final run ends with is checkpointed, collapsed or not: it is logged.
        _report(epoch, metrics, clock.due(epoch.epoch) or last, extra)

    trial.run(report)


def run_ablation_trial(params: dict[str, Any], **kwargs: Any) -> None:
    """An ablation's trial: its cell's config with one training seed, tested at the end.

    A function of its own so Ray names the trials' directories after what they are.
    """
    run_final_trial(params, key="cell", **kwargs)
