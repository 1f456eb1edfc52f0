"""A resume whose search state is one snapshot apart from its trials finishes the plan.

Tune copies an experiment's trials file and its search state out of the staging folder one
file after another; a driver killed between two copies leaves them one snapshot apart (CI hung
for 900 s on it: an ablation's grid, at concurrency 1, still counted a finished trial as
running). These tests build exactly those states from real snapshots of real experiments and
resume them, under a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from margin_tune.pipeline.sweep.search_state import TRIALS_GLOB, recorded_trials, rerun
from tests.support import stale_search_state
from tests.support.harness import private_ray_tmpdir

POINTS = stale_search_state.POINTS
#: Search-state files of each kind: what a stale copy replaces.
SEARCH_GLOBS = ("basic-variant-state-*", "search_gen_state-*", "searcher-state-*")
#: (trials snapshot, search-state snapshot), by the order in which Tune wrote them (see
#: OUT/<kind>/snapshots): trial 0 running is snapshot 1, trial 1 running snapshot 4.
CASES = {
    # The searcher is behind: it still counts trial 0 as running and has not handed out
    # trial 1, which the trials file has as running.
    "behind": (4, 1),
    # The searcher is ahead: it has handed out trial 1, which the trials file never recorded,
    # and counts trial 0 as finished, which the trials file has as running.
    "ahead": (1, 4),
}


def test_the_trials_file_read_is_the_newest_by_name_and_a_torn_one_reads_as_none(
    tmp_path: Path,
) -> None:
    def write(name: str, trials: dict[str, str]) -> None:
        data = [
            [json.dumps({"trial_id": trial_id, "status": status}), "{}"]
            for trial_id, status in trials.items()
        ]
        (tmp_path / name).write_text(json.dumps({"trial_data": data, "runner_data": {}}))

    assert recorded_trials(tmp_path) is None
    write("experiment_state-2026-01-01_00-00-00.json", {"a": "RUNNING"})
    write("experiment_state-2026-02-01_00-00-00.json", {"a": "TERMINATED", "b": "ERROR"})
    assert recorded_trials(tmp_path) == {"a": "TERMINATED", "b": "ERROR"}
    assert rerun({"a": "TERMINATED", "b": "ERROR", "c": "PENDING"}) == {"b", "c"}
    newest = sorted(tmp_path.glob(TRIALS_GLOB))[-1]
    newest.write_text(newest.read_text()[:40])  # cut off mid-write
    assert recorded_trials(tmp_path) is None


def script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0", "PYTHONPATH": os.getcwd()}
    try:
        return subprocess.run(
            [sys.executable, stale_search_state.__file__, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"")[-3000:]
        raise AssertionError(f"{args[0]} did not finish in {timeout} s: {output!r}") from error


def stale_copy(kind_dir: Path, case: Path, trials_at: int, search_at: int) -> Path:
    """The experiment with the trials of one snapshot and the search state of another, and the
    study as it stood at the later of the two, as a killed driver leaves them."""
    snapshots = kind_dir / "snapshots"
    shutil.copytree(kind_dir / "experiment", case / "experiment")
    for pattern in (TRIALS_GLOB, *SEARCH_GLOBS):
        for path in (case / "experiment").glob(pattern):
            path.unlink()
    sources = {TRIALS_GLOB: trials_at, **dict.fromkeys(SEARCH_GLOBS, search_at)}
    for pattern, source in sources.items():
        for path in (snapshots / str(source)).glob(pattern):
            shutil.copy2(path, case / "experiment" / path.name)
    journal = snapshots / str(max(trials_at, search_at)) / stale_search_state.JOURNAL
    if journal.exists():
        shutil.copy2(journal, case / stale_search_state.JOURNAL)
    return case


@pytest.mark.slow
def test_a_resume_with_search_state_a_snapshot_apart_runs_each_planned_trial_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with private_ray_tmpdir(monkeypatch):
        made = script("run", str(tmp_path / "out"), timeout=300)
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
        cases: dict[Path, tuple[str, str]] = {}
        for kind in stale_search_state.KINDS:
            kind_dir = tmp_path / "out" / kind
            for name, (trials_at, search_at) in CASES.items():
                snapshots = kind_dir / "snapshots"
                # The snapshots are the ones the cases are written for.
                trials = json.loads((snapshots / str(trials_at) / "trials.json").read_text())
                searched = json.loads((snapshots / str(search_at) / "trials.json").read_text())
                assert sorted(trials.values()) == (
                    ["RUNNING", "TERMINATED"] if name == "behind" else ["RUNNING"]
                )
                assert len(searched) == (1 if name == "behind" else 2)
                case = stale_copy(kind_dir, tmp_path / f"{kind}-{name}", trials_at, search_at)
                cases[case] = (kind, name)
        # The grid's copies share one Ray, as resumes on a long-lived cluster share Tune's
        # staging folder (the trials must be read from the output directory); each study's
        # copy has a Ray of its own, as its journal has one history.
        rows = []
        for mode, kind in (("resume-shared", "grid"), ("resume", "search")):
            these = [str(case) for case, (of, _) in cases.items() if of == kind]
            resumed = script(mode, *these, timeout=240)
            assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
            lines = resumed.stdout.splitlines()
            rows += [json.loads(line) for line in lines if line.startswith("{")]
    assert [Path(row["directory"]) for row in rows] == list(cases)
    for row in rows:
        kind, name = cases[Path(row["directory"])]
        check(kind, name, row)


def check(kind: str, name: str, row: dict[str, Any]) -> None:
    where = f"{kind}, searcher {name}"
    trials = row["trials"]
    assert len(trials) == POINTS, (where, trials)  # the budget, not one more or less
    assert {trial["status"] for trial in trials.values()} == {"TERMINATED"}, where
    assert set(row["recorded"].values()) == {"TERMINATED"}, where
    if kind == "grid":
        # Every grid point once: none handed out twice, none lost.
        assert sorted(trial["x"] for trial in trials.values()) == list(range(POINTS)), where
        return
    study = row["study"]
    assert not [trial for trial in study if trial["state"] == "RUNNING"], (where, study)
    complete = {trial["owner"]: trial["x"] for trial in study if trial["state"] == "COMPLETE"}
    # Every Tune trial has its study trial, with the point it ran; any other study trial was
    # handed out to a trial that Tune lost, and is closed.
    assert set(trials) <= set(complete), (where, study)
    assert {trial_id: trials[trial_id]["x"] for trial_id in trials} == {
        trial_id: complete[trial_id] for trial_id in trials
    }, where
    lost = [trial for trial in study if trial["owner"] not in trials]
    assert all(trial["state"] == "FAIL" for trial in lost), (where, study)
    assert len(lost) == (1 if name == "ahead" else 0), (where, study)
