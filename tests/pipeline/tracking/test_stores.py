"""Stores: checked before anything starts, created safely under concurrency, and credentials in
their URIs never printed or saved."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_server import MlflowServer

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.outputs.manifest import manifest_options, write_manifest
from margin_tune.pipeline.runtime.secrets import redact_uri, with_credentials
from margin_tune.pipeline.tracking.store import check_tracking_uri
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.errors import ConfigError


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:pw@host:5000/x", "http://user:***@host:5000/x"),
        ("postgresql://u:s3cr%40t@db/mlflow", "postgresql://u:***@db/mlflow"),
        ("https://:token@host", "https://:***@host"),
        ("http://host:5000", "http://host:5000"),
        ("sqlite:////tmp/m.db", "sqlite:////tmp/m.db"),
    ],
)
def test_credentials_are_redacted_wherever_a_uri_is_shown(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    assert redact_uri(shown) == shown


def test_a_manifest_keeps_no_password_and_resume_takes_it_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "http://me:hunter2@127.0.0.1:5000"
    write_manifest(tmp_path, "tune", {"options": {"tracking_uri": secret, "storage": None}})
    text = (tmp_path / "margin-tune.json").read_text()
    assert "hunter2" not in text and "me:***@127.0.0.1:5000" in text
    manifest = json.loads(text)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError) as caught:
        manifest_options(manifest)
    assert caught.value.field == "MLFLOW_TRACKING_URI"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://me:other@elsewhere:1")
    with pytest.raises(ConfigError):
        manifest_options(manifest)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret)
    assert manifest_options(manifest)["tracking_uri"] == secret
    assert with_credentials("sqlite:////x.db", "tracking_uri") == "sqlite:////x.db"


@pytest.mark.parametrize(
    ("uri", "phrase"),
    [
        ("gopher://host/x", "unknown store scheme"),
        ("sqlite:////nonexistent-folder-xyz/m.db", "does not exist"),
        ("http://127.0.0.1:9", "no MLflow server answers"),
    ],
)
def test_a_store_no_run_could_reach_is_refused_before_anything_starts(
    uri: str, phrase: str
) -> None:
    with pytest.raises(ConfigError, match=phrase) as caught:
        check_tracking_uri(uri)
    assert caught.value.field == "--tracking-uri"


def test_a_read_only_sqlite_file_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "m.db"
    database.write_bytes(b"")
    database.chmod(stat.S_IRUSR)
    if os.access(database, os.W_OK):  # root ignores permission bits
        pytest.skip("this user can write read-only files")
    with pytest.raises(ConfigError, match="not writable"):
        check_tracking_uri(f"sqlite:///{database}")


@pytest.mark.slow
def test_tune_with_an_unknown_scheme_exits_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "tune",
            "--space",
            "dams",
            "--trials",
            "1",
            "--tracking-uri",
            "gopher://x",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and not out.exists()
    assert "--tracking-uri" in capsys.readouterr().err


def _open_store(uri: str) -> str:
    with Tracker(uri, "race") as tracker:
        return tracker.experiment_id


def test_two_processes_creating_one_new_sqlite_store_at_once_both_succeed(tmp_path: Path) -> None:
    """MLflow's first use of a new database creates its tables: concurrently, one used to fail
    with ``table _alembic_tmp_experiments already exists``."""
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        ids = pool.map(_open_store, [uri] * 2)
    assert len(set(ids)) == 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    running = MlflowServer(tmp_path, tmp_path / "server.db")
    running.start()
    yield running
    running.stop()


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_never_printed_or_saved(
    server: MlflowServer,
    tmp_path: Path,
    tiny_overrides: list[str],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cr3t-pw"
    uri = server.url.replace("http://", f"http://alice:{secret}@")
    out = tmp_path / "sweep"
    sets = [item for o in [*tiny_overrides, "train.epochs=1"] for item in ("--set", o)]
    code = main(
        [
            *("tune", "--space", "constant", "--trials", "1", "--tracking-uri", uri),
            *("--out", str(out), "--experiment", "secret", "--no-early-stopping", *sets),
        ]
    )
    assert code == 0
    printed = capfd.readouterr()
    assert secret not in printed.out + printed.err
    assert "alice:***@" in printed.out
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["sync", str(out)]) == 0
    printed = capfd.readouterr()
    assert secret not in printed.out + printed.err
