"""Checkpoint retention that survives a driver crash.

Ray Tune's ``CheckpointConfig(num_to_keep=k)`` deletes a trial's older checkpoints as new ones
arrive, while the experiment state that ``Tuner.restore`` reads is snapshotted separately; a
driver killed between the two leaves a state pointing at a deleted checkpoint, and that trial
then fails on resume ("Could not recover from checkpoint as it does not exist"). Measured here:
one of six trials lost that way after a SIGKILL. So sweeps keep every checkpoint while a trial
runs and this callback prunes a trial's older checkpoints once it has ended, when nothing will
resume from them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ray.tune import Callback

KEEP_AFTER_END = 1


class PruneEndedTrialCheckpoints(Callback):
    """Keep only the newest checkpoint of a trial that completed or was stopped."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.path is None:
            return
        directory = Path(trial.path)
        if not directory.is_dir():  # remote storage: retention is the store's job
            return
        checkpoints = sorted(directory.glob("checkpoint_*"), key=lambda p: p.name)
        for old in checkpoints[:-KEEP_AFTER_END]:
            shutil.rmtree(old, ignore_errors=True)
