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

import io
import json
import os
import pickle
import pickletools
import shutil
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from margin_tune.trainables.errors import ConfigError

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


#: What Tune keeps of an experiment beside its trials, one file each per driver session: its
#: trials (JSON), the search algorithm's and the searcher's state, the callbacks' (pickles).
STATE_GLOBS = (
    SNAPSHOT_GLOB,
    "basic-variant-state-*.json",
    "search_gen_state-*.json",
    "searcher-state-*.pkl",
    "callback-states-*.pkl",
)
#: The copy of each state file last seen whole, beside it (a name Tune never reads).
BACKUP_PREFIX = "last-readable."


class KeepReadableExperimentState(Callback):
    """Keep a copy of each of Tune's experiment-state files each time it is written whole.

    Tune rewrites them about once a second, and not atomically where it matters: it writes
    into a staging folder and copies to the experiment folder. A driver killed at that moment
    (SIGKILL, the OOM killer, a lost node) leaves a file empty or cut off; Tune then fails to
    read it ("Failed to restore the run state") and silently starts an experiment of one
    default trial instead of resuming (seen here: an ablation resumed into a trial without its
    grid values, about once in 15 kills). The copies, read back before they are kept and
    swapped in atomically, are what :func:`repair_experiment_state` puts back. They lag by at
    most one write: a trial that ended in between runs again on resume, as one that ended
    after the last snapshot always does.
    """

    #: Tune's controller ends a step every few milliseconds while trials report often; the
    #: files change about once a second, so looking twice a second keeps the lag at one write
    #: and spares the driver a directory scan per step (P6 in bench/RESULTS.md).
    EVERY_S = 0.5

    def __init__(self) -> None:
        self._copied: dict[Path, int] = {}
        self._looked = -float("inf")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._looked >= self.EVERY_S:
            self._back_up_experiment_of(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._back_up_experiment_of(trials)

    def _back_up_experiment_of(self, trials: list) -> None:
        self._looked = time.monotonic()
        for trial in trials:
            if trial.path is not None:
                self.backup(Path(trial.path).parent)
                return

    def backup(self, experiment: Path) -> None:
        for pattern in STATE_GLOBS:
            for state in experiment.glob(pattern):
                try:
                    written = state.stat().st_mtime_ns
                    if self._copied.get(state) == written:
                        continue
                    text = state.read_bytes()
                except OSError:
                    continue
                if not _readable(state.name, text):  # being written: the next step copies it
                    continue
                partial = state.with_name(f".{BACKUP_PREFIX}{state.name}.tmp")
                partial.write_bytes(text)
                os.replace(partial, state.with_name(BACKUP_PREFIX + state.name))
                self._copied[state] = written


def repair_experiment_state(experiment: Path) -> list[str]:
    """Put back the last readable copy of each experiment-state file a kill cut off.

    Returns the names of the files put back. A cut-off file without a copy is refused: Tune
    would start over with the wrong trials.

    Raises:
        ConfigError: a cut-off state without a readable copy.
    """
    repaired = []
    for pattern in STATE_GLOBS:
        for state in sorted(experiment.glob(pattern)):
            if _readable(state.name, state.read_bytes()):
                continue
            backup = state.with_name(BACKUP_PREFIX + state.name)
            if not backup.is_file():
                raise ConfigError(
                    "DIR",
                    f"Ray Tune's experiment state {state} was cut off (the driver was killed "
                    "while writing it) and has no readable copy; `margin-tune sync` records "
                    "what finished",
                )
            os.replace(backup, state)
            repaired.append(state.name)
    return repaired


class _Placeholder:
    """What every class of a checked pickle stands for: it takes whatever unpickling does to an
    object (calls, state, items), so the pickle's structure is read and nothing is built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Placeholder:
        return _Placeholder()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass


class _StructureOnly(pickle.Unpickler):
    """The C unpickler with every class replaced by :class:`_Placeholder`."""

    def find_class(self, module: str, name: str) -> Any:
        return _Placeholder

    def persistent_load(self, pid: Any) -> Any:
        return None


def _whole_pickle(content: bytes) -> bool:
    """Whether ``content`` is one pickle read to its STOP and nothing after it.

    The C unpickler over placeholders reads it about ten times faster than
    :func:`pickletools.genops` (0.19 against 2.2 ms for a searcher's state here), which a
    driver pays twice a second; anything it cannot read is judged by ``genops`` instead.
    """
    stream = io.BytesIO(content)
    try:
        _StructureOnly(stream).load()
    except Exception:  # cut off, or a construct the placeholders do not take
        pass
    else:
        return 0 < stream.tell() == len(content)
    end = 0
    try:
        for opcode, _, position in pickletools.genops(content):
            if opcode.name == "STOP":
                end = (position or 0) + 1
                break
    except ValueError:  # cut off before its STOP
        return False
    return 0 < end == len(content)


def _readable(name: str, content: bytes) -> bool:
    """Whether this state is whole: JSON for Tune's trials; for the others, a pickle
    (``basic-variant-state`` is one despite its name) read to its STOP without building
    anything: unpickling a searcher would reconnect its Optuna storage every second."""
    try:
        if name.startswith("experiment_state-"):
            json.loads(content)
            return True
    except (ValueError, UnicodeDecodeError):
        return False
    return _whole_pickle(content)
