"""Runs small Tune experiments whose search state can be set one snapshot apart from the trials.

``run OUT`` runs, for each kind (``grid``: a grid of :data:`POINTS` points through
:class:`ResumableGrid`; ``search``: :data:`POINTS` trials of a journal-stored Optuna study through
:func:`resumable_search`), an experiment at concurrency 1 to its end, in OUT/<kind>/experiment. On
every step it keeps a copy of the driver's staging folder, where Tune writes the trials and the
search state together before it copies them out one file after another, whenever the trials in
it changed: OUT/<kind>/snapshots/<k>, each a consistent pair, with trials.json (id → status).

``resume DIR...`` resumes each experiment as margin-tune does (:func:`restored_or_new`), each
under a Ray of its own, and prints one JSON line per experiment: the trials Tune ended with (id →
status and the point or value it ran) and, for a study, its trials. ``resume-shared DIR...``
resumes them one after another under one Ray, as on a long-lived cluster: copies of one
experiment then share Tune's staging folder, which keeps each resume's files, under newer names
than the output directory's, for the next.

Run in a process of its own (Ray and the Optuna journal outlive a test otherwise), with
``TUNE_GLOBAL_CHECKPOINT_S=0`` so that Tune snapshots at every step.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune
from ray.tune import Callback

from margin_tune.pipeline.search.budget_search import BudgetOptunaSearch
from margin_tune.pipeline.sweep.search_state import (
    ResumableGrid,
    recorded_trials,
    resumable_search,
)
from margin_tune.pipeline.sweep.tuner import restored_or_new

POINTS = 3
KINDS = ("grid", "search")
#: Long enough for Tune to snapshot a running trial, short enough for a test.
TRIAL_SECONDS = 1.5
JOURNAL = "optuna-journal.log"
#: Set while ``run`` runs: the only time :class:`KeepSnapshots` copies anything.
SNAPSHOTTING = "STALE_SEARCH_STATE_SNAPSHOTS"


def trainable(config: dict[str, Any]) -> None:
    time.sleep(TRIAL_SECONDS)
    tune.report({"score": float(config["x"]), "epoch": 1})


def study_storage() -> JournalStorage:
    """The study in the working folder, by a relative path: the searcher pickled with the
    experiment opens the journal of whichever copy of it is resumed."""
    return JournalStorage(JournalFileBackend(JOURNAL))


class KeepSnapshots(Callback):
    """Copies the staging folder whenever the trials written there changed."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen: list[dict[str, str]] = []

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        # It comes back with a resumed experiment, which it must leave alone.
        if not trials or os.environ.get(SNAPSHOTTING) != "1":
            return
        staging = Path(trials[0].storage.experiment_driver_staging_path)
        recorded = recorded_trials(staging)
        if recorded is None or (self.seen and recorded == self.seen[-1]):
            return
        self.seen.append(recorded)
        copy = self.out / str(len(self.seen) - 1)
        shutil.copytree(staging, copy)
        (copy / "trials.json").write_text(json.dumps(recorded))
        journal = self.out.parent / JOURNAL
        if journal.exists():  # the study as it stood then, as a killed driver leaves it
            shutil.copy2(journal, copy / JOURNAL)


def new_tuner(kind: str, directory: Path) -> tune.Tuner:
    experiment = directory / "experiment"
    if kind == "grid":
        param_space: dict[str, Any] = {"x": tune.grid_search(list(range(POINTS)))}
        search_alg: Any = ResumableGrid(max_concurrent=1)
        samples = 1
    else:
        param_space = {}
        searcher = BudgetOptunaSearch(
            space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
            metric="score",
            mode="max",
            study_name="study",
            storage=study_storage(),
            seed=0,
            epochs=1,
        )
        search_alg = resumable_search(searcher, 1)
        samples = POINTS
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric="score", mode="max", search_alg=search_alg, num_samples=samples
        ),
        run_config=tune.RunConfig(
            name=experiment.name,
            storage_path=str(directory),
            callbacks=[KeepSnapshots(directory / "snapshots")],
            verbose=0,
        ),
    )


def run(out: Path) -> None:
    os.environ[SNAPSHOTTING] = "1"
    for kind in KINDS:
        directory = out / kind
        (directory / "snapshots").mkdir(parents=True)
        os.chdir(directory)
        results = new_tuner(kind, directory).fit()
        assert not results.errors, results.errors


def nothing_to_restore() -> tune.Tuner:
    raise AssertionError("Tune found no experiment to restore")


def resume(directories: list[Path]) -> None:
    for directory in directories:
        experiment = directory / "experiment"
        os.chdir(directory)
        tuner = restored_or_new(experiment, trainable, nothing_to_restore)
        grid = tuner.fit()
        trials = {
            result.metrics["trial_id"]: {
                "status": "ERROR" if result.error else "TERMINATED",
                "x": (result.config or {}).get("x"),
            }
            for result in grid
        }
        row: dict[str, Any] = {"directory": str(directory), "trials": trials}
        row["recorded"] = recorded_trials(experiment)
        if (directory / JOURNAL).exists():
            study = optuna.load_study(study_name="study", storage=study_storage())
            row["study"] = [
                {
                    "state": trial.state.name,
                    "owner": trial.user_attrs.get("tune_trial_id"),
                    "x": trial.params.get("x"),
                }
                for trial in study.trials
            ]
        print(json.dumps(row), flush=True)


def main() -> None:
    mode, paths = sys.argv[1], [Path(arg).resolve() for arg in sys.argv[2:]]
    groups = [paths] if mode in ("run", "resume-shared") else [[path] for path in paths]
    for group in groups:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
        try:
            if mode == "run":
                run(group[0])
            else:
                resume(group)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
