"""Checkpoint timing and retention: ended trials keep old checkpoints until a snapshot records
the end; trials checkpoint on a clock and at their last epoch."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import TINY

import margin_tune
from margin_tune.pipeline.outputs.manifest import read_manifest
from margin_tune.pipeline.sweep.checkpoints import (
    BACKUP_PREFIX,
    STATE_GLOBS,
    KeepReadableExperimentState,
    PruneEndedTrialCheckpoints,
    repair_experiment_state,
)
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


def test_checkpoint_clock_checkpoints_every_perturbation_interval_whatever_the_time() -> None:
    pbt = CheckpointClock(3600.0, last_epoch=10, every_epochs=3)
    assert [epoch for epoch in range(1, 11) if pbt.due(epoch)] == [3, 6, 9, 10]


STATE = "experiment_state-2026-12-02_05-00-00.json"


def test_a_cut_off_experiment_state_is_put_back_from_its_last_readable_copy(
    tmp_path: Path,
) -> None:
    state = tmp_path / STATE
    keeper = KeepReadableExperimentState()
    state.write_text('{"trials": ["a"]}')
    keeper.backup(tmp_path)
    state.write_text('{"trials": ["a", "b"')  # caught mid-write: the good copy stays
    keeper.backup(tmp_path)
    assert (tmp_path / (BACKUP_PREFIX + STATE)).read_text() == '{"trials": ["a"]}'
    state.write_text("")  # what a SIGKILL during the write leaves
    assert repair_experiment_state(tmp_path) == [STATE]
    assert state.read_text() == '{"trials": ["a"]}'
    assert repair_experiment_state(tmp_path) == []  # a whole state is left alone
    state.write_text("")
    with pytest.raises(margin_tune.trainables.errors.ConfigError, match=r"DIR: .*cut off"):
        repair_experiment_state(tmp_path)  # the copy was used up: nothing to put back
    state.unlink()
    # The search algorithm's state is a pickle (whatever its name says), cut off the same way.
    searcher = tmp_path / "basic-variant-state-2026-12-02_05-00-00.json"
    whole = pickle.dumps({"_total_samples": 6, "_uuid_prefix": "ed506_"})
    searcher.write_bytes(whole)
    keeper.backup(tmp_path)
    searcher.write_bytes(whole[: len(whole) // 2])
    assert repair_experiment_state(tmp_path) == [searcher.name]
    assert pickle.loads(searcher.read_bytes())["_total_samples"] == 6


class _Searcher:
    """Stands in for a searcher's pickled state: slots, a set, a closure, a large buffer."""

    def __init__(self) -> None:
        self.history = [{"trial": i, "value": i / 7} for i in range(40)]
        self.seen = {1, 2, 3}
        offset = 3
        self.score = lambda x: x + offset
        self.blob = bytes(range(256)) * 300  # beyond one 64 KiB pickle frame


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_pickled_state_is_whole_only_up_to_its_stop_at_every_cut(protocol: int) -> None:
    from ray import cloudpickle

    from margin_tune.pipeline.sweep.checkpoints import _readable

    name = "searcher-state-2026-12-02_05-00-00.pkl"
    small = cloudpickle.dumps({"_total_samples": 6, "ids": ["a", "b"], 3: (1.5, None)}, protocol)
    large = cloudpickle.dumps(_Searcher(), protocol)
    for whole in (small, large):
        assert _readable(name, whole)
        assert not _readable(name, whole + b".")  # something after the STOP
        step = max(1, len(whole) // 500)
        for cut in (*range(0, len(whole), step), len(whole) - 1):
            assert not _readable(name, whole[:cut]), cut


@pytest.mark.slow
def test_a_sweep_whose_state_a_kill_cut_off_resumes_instead_of_starting_over(
    tmp_path: Path,
) -> None:
    """Without the copy, Tune fails to read the state and silently runs one default trial."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = margin_tune.tune(
        "constant",
        trials=2,
        overrides=[*TINY, "train.epochs=2"],
        out=tmp_path / "sweep",
        tracking_uri=uri,
        early_stopping=False,
    )
    experiment = first.out / "tune"
    states = [path for pattern in STATE_GLOBS for path in experiment.glob(pattern)]
    assert {p.name.split("-")[0] for p in states} >= {"experiment_state", "search_gen_state"}
    for state in states:  # every file a kill could cut off, cut off at once
        assert (experiment / (BACKUP_PREFIX + state.name)).is_file()
        state.write_bytes(state.read_bytes()[:10])
    again = margin_tune.resume_tune(first.out, read_manifest(first.out, ("tune",)))
    assert sorted(again.trials["margin_tune.trial_id"]) == sorted(
        first.trials["margin_tune.trial_id"]
    )
    assert list(again.trials["status"]) == ["completed", "completed"]


def test_the_state_copies_are_looked_for_twice_a_second_and_always_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune ends a controller step every few milliseconds; the copies scan the folder at most
    every ``EVERY_S``, and once more when the experiment ends."""
    keeper = KeepReadableExperimentState()
    scanned: list[Path] = []
    monkeypatch.setattr(keeper, "backup", scanned.append)
    trial = SimpleNamespace(path=str(tmp_path / "trial_0"))
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    keeper.on_step_end(1, [trial])
    keeper.on_step_end(2, [trial])  # the same instant: not again
    clock[0] += KeepReadableExperimentState.EVERY_S
    keeper.on_step_end(3, [trial])
    keeper.on_experiment_end([trial])  # the end: always
    assert scanned == [tmp_path] * 3
