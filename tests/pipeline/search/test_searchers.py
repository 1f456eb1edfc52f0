"""An Optuna searcher resumed from Tune's snapshot onto a stored study that moved on after it.

What a SIGKILLed driver leaves: Tune's last snapshot of the searcher, and the study (a journal
file by default, or an RDB; both are run), which kept being written until the kill. The test
sets that up step by step (no timing involved) with the real Optuna and Ray's
``OptunaSearch``: a trial finished after the snapshot, and a trial handed out after it.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tiny import lr_space

from margin_tune.pipeline.search.budget_search import BudgetOptunaSearch
from margin_tune.pipeline.search.searchers import SearcherRequest, build_searcher
from margin_tune.pipeline.search.study import (
    JOURNAL_LOCK_GRACE_S,
    TUNE_TRIAL_ATTR,
    SeedTrial,
    study_storage,
)
from margin_tune.trainables.config import Config

EPOCHS = 3


@pytest.fixture(params=["journal", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the study lives: the default journal file, or an RDB URL given as --storage."""
    if request.param == "journal":
        return str(tmp_path / "optuna-journal.log")
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="study", storage=study_storage(storage))


def searcher(base: Config, storage: str) -> BudgetOptunaSearch:
    request = SearcherRequest(
        space=lr_space(base), seed=0, study_name="study", storage=storage, epochs=EPOCHS, trials=4
    )
    search = build_searcher("random", request)
    assert isinstance(search, BudgetOptunaSearch)
    search.set_search_properties(None, None, {})
    return search


def train(search: BudgetOptunaSearch, trial_id: str, value: float) -> None:
    for epoch in range(1, EPOCHS + 1):
        search.on_trial_result(
            trial_id, {"epoch": epoch, "training_iteration": epoch, "val_map_at_r": value}
        )
    search.on_trial_complete(
        trial_id, {"epoch": EPOCHS, "training_iteration": EPOCHS, "val_map_at_r": value}
    )


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_resumed_searcher_keeps_what_the_study_holds_and_closes_what_no_one_will_run(
    tmp_path: Path, tiny_config: Config, storage: str
) -> None:
    before = searcher(tiny_config, storage)
    for trial_id in ("a", "b"):
        assert before.suggest(trial_id) is not None
    train(before, "a", 0.5)
    snapshot = tmp_path / "searcher.pkl"
    before.save(str(snapshot))  # Tune's last snapshot
    train(before, "b", 0.7)  # finished after it ...
    assert before.suggest("c") is not None  # ... and a trial handed out after it
    del before  # the driver is killed

    after = searcher(tiny_config, storage)
    after.restore(str(snapshot))
    after.reconcile(known={"a", "b"}, rerun={"b"})  # Tune's trials, from the same snapshot
    # The trial handed out after the snapshot is unknown to Tune: told FAIL, not left RUNNING.
    study = load(storage)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.FAIL,
    ]
    # Tune replays the end of "b" (no result first), or re-runs it from its checkpoint and
    # ends it again: no error either way, the first value stays.
    result = {"epoch": EPOCHS, "training_iteration": EPOCHS, "val_map_at_r": 0.2}
    after.on_trial_complete("b", result)
    after._completed_trials.discard("b")
    train(after, "b", 0.1)
    assert after.suggest("d") is not None
    train(after, "d", 0.6)
    study = load(storage)
    assert [(t.state, t.value) for t in study.trials] == [
        (TrialState.COMPLETE, 0.5),
        (TrialState.COMPLETE, 0.7),
        (TrialState.FAIL, None),
        (TrialState.COMPLETE, 0.6),
    ]
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert [t.user_attrs[TUNE_TRIAL_ATTR] for t in study.trials] == ["a", "b", "c", "d"]
    assert after.orphaned_trials == {}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_handed_out_and_finished_after_the_snapshot_is_kept_but_named_an_orphan(
    tmp_path: Path, tiny_config: Config, caplog: pytest.LogCaptureFixture, storage: str
) -> None:
    """Optuna cannot undo a finished trial, and Tune will plan another in its place."""
    before = searcher(tiny_config, storage)
    assert before.suggest("a") is not None
    train(before, "a", 0.5)
    snapshot = tmp_path / "searcher.pkl"
    before.save(str(snapshot))
    assert before.suggest("c") is not None  # handed out after the snapshot ...
    train(before, "c", 0.9)  # ... and finished before the kill
    assert before.suggest("e") is not None  # handed out, stopped early by ASHA
    before.on_trial_complete("e", {"epoch": 1, "training_iteration": 1, "val_map_at_r": 0.3})
    del before

    after = searcher(tiny_config, storage)
    with caplog.at_level("WARNING", logger="margin_tune.pipeline.search.searchers"):
        after.restore(str(snapshot))
        after.reconcile(known={"a"}, rerun=())
    assert after.orphaned_trials == {1: "c", 2: "e"}
    assert "Optuna trial 1 (Tune trial c) finished COMPLETE" in caplog.text
    assert "Optuna trial 2 (Tune trial e) finished PRUNED" in caplog.text
    assert after.suggest("d") is not None  # Tune's replacement
    train(after, "d", 0.6)
    study = load(storage)
    rows = [(t.state, t.value, t.user_attrs[TUNE_TRIAL_ATTR]) for t in study.trials]
    assert rows == [
        (TrialState.COMPLETE, 0.5, "a"),
        (TrialState.COMPLETE, 0.9, "c"),
        (TrialState.PRUNED, 0.3, "e"),  # Optuna keeps a pruned trial's last value
        (TrialState.COMPLETE, 0.6, "d"),
    ]
    # A second resume from a later snapshot names no orphan twice and finds none new.
    after.save(str(snapshot))
    again = searcher(tiny_config, storage)
    caplog.clear()
    with caplog.at_level("WARNING", logger="margin_tune.pipeline.search.searchers"):
        again.restore(str(snapshot))
        again.reconcile(known={"a", "d"}, rerun=())
    assert again.orphaned_trials == {1: "c", 2: "e"}
    assert "Optuna trial" not in caplog.text


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_searcher_snapshot_older_than_tunes_trials_takes_back_the_trials_tune_runs(
    tmp_path: Path, tiny_config: Config, storage: str
) -> None:
    """Tune copies its trials and the searcher's state one file after another: a kill between
    the two leaves a searcher that never saw a trial that Tune restores and runs again."""
    before = searcher(tiny_config, storage)
    assert before.suggest("a") is not None
    snapshot = tmp_path / "searcher.pkl"
    before.save(str(snapshot))  # the searcher's file, one snapshot behind Tune's trials
    assert before.suggest("b") is not None  # Tune's trials file has "b" as running
    del before

    after = searcher(tiny_config, storage)
    after.restore(str(snapshot))
    after.reconcile(known={"a", "b"}, rerun={"a", "b"})
    train(after, "a", 0.5)
    train(after, "b", 0.7)  # would be a KeyError in Ray's OptunaSearch
    study = load(storage)
    rows = [(t.state, t.value, t.user_attrs[TUNE_TRIAL_ATTR]) for t in study.trials]
    assert rows == [(TrialState.COMPLETE, 0.5, "a"), (TrialState.COMPLETE, 0.7, "b")]
    assert after.orphaned_trials == {}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_searcher_snapshot_newer_than_tunes_trials_lets_go_of_the_trials_tune_lost(
    tmp_path: Path, tiny_config: Config, storage: str
) -> None:
    before = searcher(tiny_config, storage)
    for trial_id in ("a", "b"):
        assert before.suggest(trial_id) is not None
    snapshot = tmp_path / "searcher.pkl"
    before.save(str(snapshot))  # the searcher's file knows "b"; Tune's trials file does not
    del before

    after = searcher(tiny_config, storage)
    after.restore(str(snapshot))
    after.reconcile(known={"a"}, rerun={"a"})
    assert "b" not in after._ot_trials
    train(after, "a", 0.5)
    assert after.suggest("c") is not None  # Tune's trial in the place of the lost one
    train(after, "c", 0.6)
    study = load(storage)
    rows = [(t.state, t.value, t.user_attrs[TUNE_TRIAL_ATTR]) for t in study.trials]
    assert rows == [
        (TrialState.COMPLETE, 0.5, "a"),
        (TrialState.FAIL, None, "b"),
        (TrialState.COMPLETE, 0.6, "c"),
    ]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_searcher_restored_without_tunes_trials_settles_on_its_own_at_first_use(
    tmp_path: Path, tiny_config: Config, storage: str
) -> None:
    """An experiment saved by an older version restores a search algorithm that never calls
    reconcile: the searcher's own snapshot stands in for Tune's trials."""
    before = searcher(tiny_config, storage)
    assert before.suggest("a") is not None
    snapshot = tmp_path / "searcher.pkl"
    before.save(str(snapshot))
    assert before.suggest("b") is not None  # handed out after the snapshot
    del before

    after = searcher(tiny_config, storage)
    after.restore(str(snapshot))
    train(after, "a", 0.5)
    study = load(storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]


def test_a_study_in_memory_is_restored_as_it_was(tmp_path: Path, tiny_config: Config) -> None:
    request = SearcherRequest(space=lr_space(tiny_config), seed=0, study_name="s", epochs=EPOCHS)
    before = build_searcher("random", request)
    assert isinstance(before, BudgetOptunaSearch)
    before.set_search_properties(None, None, {})
    before.suggest("a")
    before.suggest("b")
    train(before, "a", 0.5)
    before.save(str(tmp_path / "searcher.pkl"))
    after = build_searcher("random", request)
    assert isinstance(after, BudgetOptunaSearch)
    after.restore(str(tmp_path / "searcher.pkl"))
    assert after._ot_study is not None
    states = [t.state for t in after._ot_study.trials]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING]  # "b" runs on after resume


def test_a_journal_lock_left_by_a_killed_driver_is_taken_over_after_the_grace_period(
    tmp_path: Path,
) -> None:
    """The driver is the study's only writer: a lock unchanged for the grace period is stale
    (Optuna's default would hold a resume for 30 s)."""
    import os
    import time

    path = tmp_path / "optuna-journal.log"
    study = optuna.create_study(study_name="study", storage=study_storage(str(path)))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    stale = Path(f"{path}.lock")
    os.symlink(str(path), stale)  # Optuna's lock, as a SIGKILL during an append leaves it
    started = time.monotonic()
    again = optuna.load_study(study_name="study", storage=study_storage(str(path)))
    again.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert len(again.trials) == 2
    assert time.monotonic() - started < JOURNAL_LOCK_GRACE_S + 5
    assert not stale.exists()


@pytest.mark.parametrize(
    ("name", "now"), [("BudgetOptunaSearch", BudgetOptunaSearch), ("SeedTrial", SeedTrial)]
)
def test_a_searcher_pickled_where_it_was_defined_before_still_loads(name: str, now: type) -> None:
    """A sweep saved before the searcher moved to ``budget_search`` (and its seeds to ``study``)
    names them in ``searchers`` inside its ``tuner.pkl``: ``resume`` must still load it (it
    failed with an AttributeError before the module kept the old name)."""
    saved = f"cmargin_tune.pipeline.search.searchers\n{name}\n.".encode()  # a pickled reference
    assert pickle.loads(saved) is now


def test_the_searchers_registry_imports_no_ray_tune_until_a_searcher_is_built() -> None:
    """The sweep's input check reads the registry's names before Ray starts."""
    code = (
        "import sys\n"
        "from margin_tune.pipeline.search import searchers\n"
        "names = searchers.SEARCHERS.names()\n"
        "print('ray.tune' in sys.modules)\n"
        "searchers.BudgetOptunaSearch\n"
        "print('ray.tune' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
