"""The Ray session of a command: started in the background, shut down at its end."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import ray

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.runtime.exit_codes import EXIT_BAD_INPUT
from margin_tune.pipeline.sweep import session
from margin_tune.pipeline.sweep.session import ray_ready, ray_session
from margin_tune.trainables.errors import ConfigError

pytestmark = pytest.mark.slow


def _holding() -> bool:
    """A thread holds a Ray session (it started Ray and shuts it down)."""
    return any(thread.name == "ray-session" for thread in threading.enumerate())


def test_a_background_session_is_up_by_the_first_use_and_the_thread_holds_it() -> None:
    """Ray's daemons die with the thread that started them (PR_SET_PDEATHSIG): the session's
    thread outlives the start, and Ray still answers after a pause longer than the start."""
    with ray_session(None, num_cpus=2, background=True):
        assert _holding()  # the block runs while Ray starts: nothing here waited for it
        ray_ready()
        assert ray.is_initialized()
        time.sleep(2)

        @ray.remote(num_cpus=1)
        def answer() -> int:
            return 42

        assert ray.get([answer.remote() for _ in range(2)], timeout=120) == [42, 42]
        assert _holding()
    assert not ray.is_initialized()
    assert session._current is None and not _holding()


def test_references_the_driver_drops_after_the_session_are_harmless(tmp_path: Path) -> None:
    """The session's end waits until Ray is down, so that the driver dropping object
    references afterwards (the dataset put for the trials, results) does not race the core
    worker's shutdown: Ray 2.60 ends the whole process when a reference is dropped while it
    shuts down on another thread. In a process of its own, which must exit 0."""
    script = tmp_path / "drop.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            import numpy as np
            import ray
            from margin_tune.pipeline.sweep.session import ray_ready, ray_session

            with ray_session(None, num_cpus=1, background=True):
                ray_ready()
                refs = [ray.put(np.ones(1000)) for _ in range(200)]
            assert not ray.is_initialized()
            while refs:
                refs.pop()
                time.sleep(0.002)
            print("dropped")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dropped" in done.stdout


def test_a_block_refused_before_it_needed_ray_still_ends_the_session() -> None:
    with (
        pytest.raises(ConfigError, match="refused"),
        ray_session(None, num_cpus=1, background=True),
    ):
        raise ConfigError("--trials", "refused")
    assert not ray.is_initialized()
    assert not _holding()


def test_a_session_inside_another_is_the_outer_one() -> None:
    with ray_session(None, num_cpus=1, background=True):
        with ray_session(None, num_cpus=1, background=True):
            ray_ready()
            assert ray.is_initialized()
        assert ray.is_initialized()
    assert not ray.is_initialized()


def test_an_address_nothing_answers_on_is_refused_at_once_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ray.init`` would retry it for about 14 minutes; the refusal leaves nothing behind."""
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        started = time.monotonic()
        code = main(
            [
                *("tune", "--space", "constant", "--trials", "1", "--set", "train.epochs=2"),
                *("--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "out")),
                *("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"),
            ]
        )
    assert code == EXIT_BAD_INPUT
    assert time.monotonic() - started < 120
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"margin-tune: error: --address: nothing answers at 127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()
    assert not ray.is_initialized()


@pytest.mark.parametrize("background", [False, True])
def test_a_local_session_ends_every_daemon_it_started_the_monitor_killed_first(
    background: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process Ray's node started is gone once the block has ended, and the autoscaler
    monitor was already dead (SIGKILL) when ``ray.shutdown`` began: asked to stop by Ray, it
    waits on the GCS that Ray stops before it, and is killed only after a second."""
    monitor_at_shutdown: list[int | None] = []
    real_shutdown = ray.shutdown

    def shutdown() -> None:
        monitor_at_shutdown.extend(p.poll() for p in started[session.AUTOSCALER_MONITOR])
        real_shutdown()

    monkeypatch.setattr(ray, "shutdown", shutdown)
    with ray_session(None, num_cpus=1, background=background):
        ray_ready()
        processes = ray._private.worker._global_node.all_processes
        started = {kind: [info.process for info in infos] for kind, infos in processes.items()}
    assert monitor_at_shutdown == [-signal.SIGKILL]
    alive = {kind: [p.pid for p in procs if p.poll() is None] for kind, procs in started.items()}
    assert not any(alive.values()), alive
