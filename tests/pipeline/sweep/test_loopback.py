"""What a local sweep listens on: every socket of the command and of its Ray stays on loopback.

The README's "What listens where" is this test's claim. The sockets are read from /proc while
a real ``margin-tune tune`` runs (GCS, raylet, object manager, driver, workers and the
runtime-env agent all listen); none may be bound beyond 127.0.0.1 / ::1.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sockets import Listener, listeners

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.sweep.ray_network import (
    SINGLE_MACHINE_VARIABLE,
    loopback_warning,
    token_exposure_warning,
    token_path,
)

EXECUTABLE = Path(sys.executable).with_name("margin-tune")
linux_only = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")


def _sweep_listeners(command: list[str], env: dict[str, str]) -> tuple[set[Listener], str]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    seen: set[Listener] = set()
    try:
        while process.poll() is None:
            seen |= listeners(process.pid)
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()
    _, error = process.communicate(timeout=120)
    assert process.returncode == 0, error[-2000:]
    return seen, error


@linux_only
@pytest.mark.slow
def test_a_local_sweep_listens_on_loopback_only(tmp_path: Path, tiny_overrides: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != SINGLE_MACHINE_VARIABLE}
    sets = [item for o in [*tiny_overrides, "train.epochs=12"] for item in ("--set", o)]
    command = [str(EXECUTABLE), "tune", "--space", "constant", "--trials", "2", *sets]
    command += ["--concurrency", "1", "--no-early-stopping", "--out", str(tmp_path / "sweep")]
    command += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    token = token_path()
    mode_before = token.stat().st_mode if token.exists() else None
    seen, error = _sweep_listeners(command, env)
    processes = {listener.process for listener in seen}
    # Ray's servers were seen listening, so the claim below is about real sockets.
    assert {"gcs_server", "raylet"} <= processes, seen
    assert any(name.startswith("ray::") for name in processes), seen
    beyond = sorted(f"{s.process} {s.address}:{s.port}" for s in seen if not s.loopback)
    assert beyond == []
    assert "listens on every interface" not in error
    # Ray's token is not copied into anything the sweep wrote, and its file is left as it was.
    secret = token.read_bytes().strip()
    assert len(secret) >= 16
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if secret in p.read_bytes()]
    if mode_before is not None:
        assert token.stat().st_mode == mode_before


def test_the_warning_names_why_a_local_ray_would_leave_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert loopback_warning("127.0.0.1") is None
    assert loopback_warning("::1") is None
    monkeypatch.delenv(SINGLE_MACHINE_VARIABLE, raising=False)
    imported_first = loopback_warning("192.0.2.7")
    assert imported_first is not None and "192.0.2.7" in imported_first
    assert f"{SINGLE_MACHINE_VARIABLE}=0 before importing ray" in imported_first
    monkeypatch.setenv(SINGLE_MACHINE_VARIABLE, "1")
    chosen = loopback_warning("192.0.2.7")
    assert chosen is not None and f"{SINGLE_MACHINE_VARIABLE} is set" in chosen


@pytest.mark.slow
def test_ray_imported_first_is_warned_about_not_hidden(tmp_path: Path) -> None:
    """A script that imports ray before margin-tune gets Ray's own choice, and is told so."""
    script = (
        "import ray\n"
        "from margin_tune.pipeline.sweep.session import ray_session\n"
        "with ray_session(None, num_cpus=1):\n"
        "    print(ray.util.get_node_ip_address())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != SINGLE_MACHINE_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    node_ip = done.stdout.split()[-1]
    if node_ip in ("127.0.0.1", "::1"):  # a host whose only address is loopback
        assert "listens on every interface" not in done.stderr
    else:
        assert f"listens on every interface (node IP {node_ip})" in done.stderr


def test_ui_on_a_network_host_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ui", "--tracking-uri", "http://127.0.0.1:9", "--host", "0.0.0.0"]) == 0
    error = capsys.readouterr().err
    assert "--host 0.0.0.0 makes the UI reachable from the network" in error


def test_a_token_file_other_users_can_read_is_reported() -> None:
    home = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        token = home / ".ray" / "auth_token"
        token.parent.mkdir()
        token.write_text("x" * 32)
        home.chmod(0o755)
        token.parent.chmod(0o755)
        token.chmod(0o644)
        warning = token_exposure_warning(token)
        assert warning is not None and "mode 0644" in warning and f"chmod 600 {token}" in warning
        home.chmod(0o700)  # a private home keeps a 0644 token private
        assert token_exposure_warning(token) is None
        home.chmod(0o755)
        token.chmod(0o600)
        assert token_exposure_warning(token) is None
        assert stat.S_IMODE(token.stat().st_mode) == 0o600  # reported, never changed
        assert token_exposure_warning(home / "absent") is None
    finally:
        home.chmod(0o700)
        shutil.rmtree(home)
