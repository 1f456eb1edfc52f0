"""Every run says what ran: MLflow's source tags, margin-tune's version and its own commit
(never the commit of a user's repository it is installed in), the library versions, the host,
and each trial's resolved config as an artifact."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from tiny import TINY

from margin_tune.pipeline.sweep.callback import CONFIG_ARTIFACT, open_trial_run
from margin_tune.pipeline.tracking.provenance import (
    MAX_TAG_LENGTH,
    NO_CHECKOUT,
    command_line,
    own_checkout,
    provenance_tags,
    source_name,
)
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    COMMAND_TAG,
    GIT_COMMIT_TAG,
    HOST_TAG,
    RESUMED_BY_PREFIX,
    VERSION_TAG,
    VERSIONS_PREFIX,
)
from margin_tune.trainables.parts import load_config


def git(*args: str, cwd: Path) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_a_package_inside_someone_elses_repository_records_no_commit(tmp_path: Path) -> None:
    """A wheel in a venv inside the user's repo: the package file is there, untracked."""
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "analysis.py").write_text("x = 1\n")
    git("add", "analysis.py", cwd=tmp_path)
    git("commit", "-qm", "the user's work", cwd=tmp_path)
    package = tmp_path / ".venv" / "lib" / "site-packages" / "margin_tune"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert own_checkout(package / "__init__.py") is None


def test_a_checkout_of_margin_tune_records_its_commit_and_whether_it_was_dirty(
    tmp_path: Path,
) -> None:
    package = tmp_path / "margin_tune"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "margin-tune"\n')
    git("init", "-q", cwd=tmp_path)
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "release", cwd=tmp_path)
    head = git("rev-parse", "HEAD", cwd=tmp_path).strip()
    assert own_checkout(package / "__init__.py") == (head, False)
    (package / "__init__.py").write_text("changed = True\n")
    assert own_checkout(package / "__init__.py") == (head, True)


@pytest.mark.parametrize(
    ("package_dir", "pyproject"),
    [
        ("third_party/margin_tune", '[project]\nname = "margin-tune"\n'),  # vendored deeper
        ("margin_tune", '[project]\nname = "their-analysis"\n'),  # copied into their root
        ("margin_tune", None),  # a repository without a pyproject.toml
    ],
)
def test_a_copy_vendored_into_someone_elses_repository_records_no_commit(
    tmp_path: Path, package_dir: str, pyproject: str | None
) -> None:
    """Tracked by git, but by the user's repository: its commit is not margin-tune's."""
    package = tmp_path / package_dir
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    git("init", "-q", cwd=tmp_path)
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "their work", cwd=tmp_path)
    assert own_checkout(package / "__init__.py") is None


def test_a_resumed_run_keeps_its_creators_provenance_and_says_what_resumed_it(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with Tracker(uri, "provenance", artifact_location=(tmp_path / "a").as_uri()) as tracker:
        sweep = tracker.sweep_run("dams", sweep_id="s1")
    client = MlflowClient(uri)
    # As if an older margin-tune on another host had created it.
    client.set_tag(sweep, VERSION_TAG, "0.1.0")
    client.set_tag(sweep, HOST_TAG, "elsewhere")
    with Tracker(uri, "provenance", artifact_location=(tmp_path / "a").as_uri()) as tracker:
        assert tracker.sweep_run("dams", sweep_id="s1") == sweep
        tracker.child_run(sweep, "t1", wait=False)
    with Tracker(
        uri, "provenance", artifact_location=(tmp_path / "a").as_uri()
    ) as tracker:  # re-opened by the writer this time
        assert tracker.child_run(sweep, "t1", wait=False) is not None
    tags = client.get_run(sweep).data.tags
    assert (tags[VERSION_TAG], tags[HOST_TAG]) == ("0.1.0", "elsewhere")
    assert tags[RESUMED_BY_PREFIX + VERSION_TAG] == provenance_tags()[VERSION_TAG]
    assert tags[RESUMED_BY_PREFIX + HOST_TAG] == provenance_tags()[HOST_TAG]
    (trial,) = client.search_runs(
        [client.get_run(sweep).info.experiment_id], f"tags.mlflow.parentRunId = '{sweep}'"
    )
    assert trial.data.tags[VERSION_TAG] == provenance_tags()[VERSION_TAG]
    assert trial.data.tags[RESUMED_BY_PREFIX + VERSION_TAG] == provenance_tags()[VERSION_TAG]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/margin-tune", "compare", "--preset", "quick"], "margin-tune compare"),
        (["/venv/bin/margin-tune", "-q", "tune"], "margin-tune tune"),
        ([""], "python"),
        (["/venv/site-packages/margin_tune/__main__.py", "train"], "margin-tune train"),
        (["/nowhere/theirs/__main__.py", "train"], "python"),  # another package's -m
    ],
)
def test_the_source_name_is_the_command(argv: list[str], expected: str) -> None:
    assert source_name(argv) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["/venv/bin/margin-tune", "compare", "--preset", "quick", "--set", "train.lr=1e-3"],
            "margin-tune compare --preset quick --set train.lr=1e-3",
        ),
        (["/venv/site-packages/margin_tune/__main__.py", "train"], "margin-tune train"),
        (
            ["/venv/bin/margin-tune", "tune", "--tracking-uri", "http://me:secret@host:5000"],
            "margin-tune tune --tracking-uri 'http://me:***@host:5000'",
        ),
        (
            ["/venv/bin/margin-tune", "tune", "--storage=postgresql://me:secret@db/optuna"],
            "margin-tune tune '--storage=postgresql://me:***@db/optuna'",
        ),
        (
            ["/venv/bin/margin-tune", "tune", "--set", "dataset.path=/my data"],
            "margin-tune tune --set 'dataset.path=/my data'",
        ),
        ([""], "python"),
    ],
)
def test_the_command_tag_is_the_whole_command_line_without_passwords(
    argv: list[str], expected: str
) -> None:
    assert command_line(argv) == expected


def test_a_script_is_recorded_by_its_path_and_arguments_and_a_huge_one_cut(
    tmp_path: Path,
) -> None:
    script = tmp_path / "study.py"
    script.write_text("")
    assert command_line([str(script), "--fast"]) == f"{script.resolve()} --fast"
    long = command_line([str(script), *(["x" * 100] * 200)])
    assert len(long) == MAX_TAG_LENGTH and long.endswith("…")


def test_every_run_carries_the_provenance_and_a_trial_its_config(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config(overrides=list(TINY))
    with Tracker(uri, "provenance", artifact_location=(tmp_path / "a").as_uri()) as tracker:
        sweep = tracker.sweep_run("dams", sweep_id="s1")
        trial = open_trial_run(tracker, sweep, "t1", config, {})
        tracker.flush()
    client = MlflowClient(uri)
    for run_id in (sweep, trial):
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
        assert tags[VERSION_TAG] == provenance_tags()[VERSION_TAG] != "not installed"
        assert tags[COMMAND_TAG] == command_line()
        assert {f"{VERSIONS_PREFIX}{n}" for n in ("python", "torch", "ray", "mlflow")} <= set(tags)
        commit = tags[GIT_COMMIT_TAG]
        assert commit == NO_CHECKOUT or tags["mlflow.source.git.commit"] == commit
    (artifact,) = client.list_artifacts(trial)
    assert artifact.path == CONFIG_ARTIFACT
    local = client.download_artifacts(trial, CONFIG_ARTIFACT, str(tmp_path))
    assert yaml.safe_load(Path(local).read_text()) == config.to_dict()
