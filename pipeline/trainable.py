"""The Ray Tune function trainable: a thin wrapper around ``trainables.trial.Trial``.

It lays the searched values over the sweep's base config, resumes from Tune's checkpoint when
there is one, and reports every epoch with a checkpoint. Nothing here talks to MLflow: the
driver logs what Tune receives, so trials never wait on (or need access to) the store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from pipeline.search_space import apply_overrides
from trainables.config import Config, config_from_dict
from trainables.data import Dataset
from trainables.trial import EpochReport, Trial

CHECKPOINT_FILE = "trial.pt"


def trial_config(base: dict[str, Any], params: dict[str, Any], cpus: float) -> Config:
    """The config one trial runs: base + searched values, one torch thread per CPU of the trial."""
    threads = max(1, int(cpus))
    return apply_overrides(config_from_dict(base), {**params, "train.num_threads": threads})


def run_tune_trial(
    params: dict[str, Any], *, base: dict[str, Any], dataset: Dataset, cpus: float
) -> None:
    """Function trainable for ``tune.with_parameters``: ``dataset`` comes from the object store."""
    trial = Trial(trial_config(base, params, cpus), dataset=dataset)
    _resume(trial)
    trial.run(lambda epoch: _report(epoch, epoch.metrics))


def _resume(trial: Trial) -> None:
    """Continue from Tune's checkpoint after a failure, a restore or a node loss."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=True)
        trial.load_state_dict(state)


def _report(epoch: EpochReport, metrics: dict[str, float]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        torch.save(epoch.checkpoint(), Path(directory) / CHECKPOINT_FILE)
        tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(directory))


def run_final_trial(
    params: dict[str, Any],
    *,
    configs: dict[str, dict[str, Any]],
    dataset: Dataset,
    cpus: float,
) -> None:
    """Re-train a method's chosen config with one training seed; the last epoch adds test_*.

    ``params`` holds ``method`` and ``seed`` (a grid point); ``configs`` maps each method to its
    best tuned config. Test classes are evaluated once, after the last epoch.
    """
    config = trial_config(configs[params["method"]], {"seed": params["seed"]}, cpus)
    trial = Trial(config, dataset=dataset)
    _resume(trial)

    def report(epoch: EpochReport) -> None:
        metrics = dict(epoch.metrics)
        if epoch.epoch == config.train.epochs:
            metrics.update({f"test_{k}": v for k, v in trial.evaluate_test().items()})
        _report(epoch, metrics)

    trial.run(report)
