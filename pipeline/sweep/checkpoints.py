"""Checkpoint retention that survives a driver crash.

Ray Tune's ``CheckpointConfig(num_to_keep=k)`` deletes a trial's older checkpoints as new ones
arrive, while the experiment state that ``Tuner.restore`` reads is snapshotted separately; a
driver killed between the two leaves a state pointing at a deleted checkpoint, and that trial
then fails on resume ("Could not recover from checkpoint as it does not exist"). Measured here:
one of six trials lost that way after a SIGKILL. So sweeps keep every checkpoint while a trial
runs, and this callback prunes an ended trial's older checkpoints only once an experiment
snapshot that records its end has reached the output directory: from then on a resume never
looks for them.

Tune saves the snapshot in a staging directory and copies it to the output directory in the
background, so a copy that lands after a trial ended may still hold a save from before. The
copy launched after that one cannot: it starts once the previous copy finished, from a newer
save. Hence "the second distinct snapshot time after the end".
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

KEEP_AFTER_END = 1
#: The experiment state Tune writes, one file per driver session.
SNAPSHOT_GLOB = "experiment_state-*.json"


class PruneEndedTrialCheckpoints(Callback):
    """Keep only the newest checkpoint of a trial that ended, once a snapshot records the end."""

    def __init__(self) -> None:
        #: Ended trial directory -> the end time, then the first snapshot time seen after it.
        self._waiting: dict[Path, float] = {}
        self._first_snapshot_after: dict[Path, float] = {}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.path is None:
            return
        directory = Path(trial.path)
        if directory.is_dir():  # remote storage: retention is the store's job
            self._waiting[directory] = time.time()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._waiting:
            self.prune(snapshot=_latest_snapshot(next(iter(self._waiting)).parent))

    def prune(self, snapshot: float) -> None:
        """Prune ended trials that a snapshot taken at time ``snapshot`` surely records."""
        for directory, ended in list(self._waiting.items()):
            first = self._first_snapshot_after.get(directory)
            if first is None and snapshot > ended:
                self._first_snapshot_after[directory] = first = snapshot
            if first is not None and snapshot > first:
                prune_to_newest(directory)
                del self._waiting[directory], self._first_snapshot_after[directory]


def prune_to_newest(directory: Path) -> None:
    checkpoints = sorted(directory.glob("checkpoint_*"), key=lambda p: p.name)
    for old in checkpoints[:-KEEP_AFTER_END]:
        shutil.rmtree(old, ignore_errors=True)


def _latest_snapshot(experiment: Path) -> float:
    times = [path.stat().st_mtime for path in experiment.glob(SNAPSHOT_GLOB)]
    return max(times, default=0.0)
