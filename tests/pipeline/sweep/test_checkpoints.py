"""Checkpoint timing and retention: ended trials keep old checkpoints until a snapshot records
the end; trials checkpoint on a clock and at their last epoch."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

from margin_tune.pipeline.sweep.checkpoints import PruneEndedTrialCheckpoints
from margin_tune.pipeline.sweep.trainable import CheckpointClock


def _trial_dir(experiment: Path, checkpoints: int) -> Path:
    directory = experiment / "trial_a"
    for index in range(checkpoints):
        (directory / f"checkpoint_{index:06d}").mkdir(parents=True)
    return directory


def _snapshot_at(experiment: Path, when: float) -> None:
    state = experiment / "experiment_state-2026-11-23_00-00-00.json"
    state.write_text("{}")
    os.utime(state, (when, when))


def _left(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("checkpoint_*"))


def test_checkpoints_pruned_only_after_the_second_snapshot_since_the_end(tmp_path: Path) -> None:
    directory = _trial_dir(tmp_path, checkpoints=4)
    callback = PruneEndedTrialCheckpoints()
    _snapshot_at(tmp_path, time.time() - 60)  # taken while the trial ran
    callback.on_trial_complete(0, [], SimpleNamespace(path=str(directory)))
    ended = time.time()

    callback.on_step_end(1, [])
    assert len(_left(directory)) == 4, "no snapshot since the end: a resume may need any of them"
    _snapshot_at(tmp_path, ended + 1)  # may be the copy of a save from before the end
    callback.on_step_end(2, [])
    assert len(_left(directory)) == 4
    _snapshot_at(tmp_path, ended + 2)  # copied after the previous one landed: records the end
    callback.on_step_end(3, [])
    assert _left(directory) == ["checkpoint_000003"]


def test_trials_without_a_local_directory_are_left_to_their_store(tmp_path: Path) -> None:
    callback = PruneEndedTrialCheckpoints()
    callback.on_trial_complete(0, [], SimpleNamespace(path=None))
    callback.on_trial_complete(0, [], SimpleNamespace(path=str(tmp_path / "remote")))
    callback.on_step_end(1, [])  # nothing to watch, nothing raised


def test_checkpoint_clock_every_epoch_at_zero_and_always_at_the_last() -> None:
    every_epoch = CheckpointClock(0.0, last_epoch=5)
    assert [every_epoch.due(epoch) for epoch in range(1, 6)] == [True] * 5
    rarely = CheckpointClock(3600.0, last_epoch=5)
    assert [rarely.due(epoch) for epoch in range(1, 6)] == [False, False, False, False, True]
