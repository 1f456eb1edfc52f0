"""The Ray session a command runs in: started beside the driver's own start-up, shut down
once its outputs are written.

A local ``ray.init`` takes about 4–5 s here, most of it waiting for Ray's daemons to come up;
the driver meanwhile has seconds of its own to spend once the input is checked (opening the
MLflow store, creating the Optuna study, building the searcher, logging the dataset). So
``ray_session(..., background=True)`` starts Ray on a thread and returns at once, and
:func:`ray_ready` waits for it where Ray is first needed (putting the dataset into the object
store). Ray is still only started after the input was checked: a refused input never starts
it (``tests/pipeline/cli/test_bad_inputs.py`` has a tripwire on ``ray.init``). The check
imports only what it needs (torch, Optuna, Ray's core: :mod:`~margin_tune.pipeline.sweep.plan`),
so a ``tune`` begins Ray 2.2 s after its start instead of 3.6 s, and imports Ray Tune, MLflow
and pandas while Ray comes up. On two cores that overlap gains less than the seconds moved:
Ray's start is itself CPU work (six Python daemons importing Ray), and its ``ray.init`` took
4.5 s beside the imports against 3.0 s alone; P9's first trial came 1.2 s sooner.

Not done, measured: warming workers ahead. Tasks that import the trainable run in the pool's
workers, but Ray starts each actor (a Tune trial) in a worker of its own: the trials ran in
processes other than the warmed ones (Ray 2.60, checked by pid).

At the end Ray is shut down where the session ends, after the outputs are written, and the
driver waits for it. Not done, measured: shutting Ray down on its thread while the driver
writes the outputs (about 1.5 s of overlap). The driver still holds object references then, and
dropping one while the core worker shuts down on another thread kills the process ("The core
worker has already been shutdown ... The process will exit", Ray 2.60, reproduced by dropping
``ray.put`` references during the shutdown); Ray's API is not meant to be used during its own
shutdown. What is done instead: the autoscaler monitor, which makes a local Ray's shutdown
wait a second for nothing, is killed first (:func:`shutdown_local`). A joined cluster
(``address``) is joined and left the usual way: the cluster is someone else's.

Not done, measured: Ray's ``preload_python_modules`` setting, to have idle workers import
torch and the trainable while the driver sets up. Tune starts its trial actors with a runtime
environment of their own (``env_vars``, ``ray/tune/execution/class_cache.py``), so they never
run in the idle workers started for the driver's job; those only took CPU from the trials'
own workers (first trial 10.3 → 13.4 s, P9's command).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray

from margin_tune.pipeline.runtime.interrupts import rearm
from margin_tune.pipeline.sweep.ray_network import (
    loopback_warning,
    release,
    token_exposure_warning,
)
from margin_tune.trainables.errors import ConfigError

#: Ray's own opt-out of its usage statistics, for a Ray this process starts (documented at
#: https://docs.ray.io/en/latest/cluster/usage-stats.html, "How to disable it"); a user's value
#: wins. A cluster the command joins keeps what its owner chose.
USAGE_STATS_VARIABLE = "RAY_USAGE_STATS_ENABLED"


class _NotMainThread(logging.Filter):
    """Ray warns that it sets no SIGTERM handler when started off the main thread; the driver
    installs its own once Ray is up (:func:`~margin_tune.pipeline.runtime.interrupts.rearm`),
    so the warning would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


class _Start:
    """``ray.init``, run here or on a thread that then holds the session.

    Ray starts its daemons with ``PR_SET_PDEATHSIG``, which Linux fires when the *thread* that
    started them ends: a thread that only ran ``ray.init`` would take the GCS and the raylet
    with it. So the thread that starts Ray stays until the session ends, and shuts it down.
    """

    def __init__(self, address: str | None, num_cpus: int | None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._up = threading.Event()
        self._stop = threading.Event()
        self._ready = False

    def run(self) -> None:
        try:
            if self.address:
                check_listening(self.address)
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except ConnectionError as error:
                    raise ConfigError(
                        "--address",
                        f"cannot join the Ray cluster at {self.address} ({error}); give the "
                        "address `ray start --head` printed, and for its token authentication "
                        "(Ray's default) set RAY_AUTH_MODE=token in this shell "
                        "(https://docs.ray.io/en/latest/ray-security/token-auth.html)",
                    ) from None
            else:
                os.environ.setdefault(USAGE_STATS_VARIABLE, "0")
                ray.init(
                    address="local",  # never join a cluster someone else started here
                    num_cpus=self.num_cpus or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
        except BaseException as error:  # handed to the main thread by wait()
            self.error = error
        finally:
            self._up.set()

    def begin(self) -> None:
        worker_logger = logging.getLogger("ray._private.worker")
        quiet = _NotMainThread()
        worker_logger.addFilter(quiet)

        def hold() -> None:
            try:
                self.run()
            finally:
                worker_logger.removeFilter(quiet)
            self._stop.wait()
            shutdown_local()

        self._thread = threading.Thread(target=hold, name="ray-session", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until Ray is up: its error, raised here; SIGTERM handled by the driver again."""
        self._up.wait()
        if self.error is not None:
            raise self.error
        if not self._ready:
            self._ready = True
            rearm()
            exposed = token_exposure_warning()
            if exposed:
                print(exposed, file=sys.stderr)

    def end(self) -> None:
        """Shut Ray down and wait until it is down: on the session's thread, else here."""
        if self._thread is None:
            if self.address:
                ray.shutdown()
            else:
                shutdown_local()
        else:
            self._stop.set()
            self._thread.join()


def shutdown_local() -> None:
    """``ray.shutdown`` of a Ray this process started, its autoscaler monitor killed first.

    ``ray.shutdown`` stops the daemons one by one, each with SIGTERM and up to 1 s to exit
    (``Node.kill_all_processes``, Ray 2.60), the GCS before the monitor. The monitor's SIGTERM
    handler then tries to tell the drivers through the dead GCS that it "failed" and outlives
    its second: 1.0 of the 1.4 s a shutdown took here, with nothing running. A local Ray has
    no autoscaling to clean up, so the monitor is killed outright before the rest; the
    shutdown then took 0.4 s. Done through Ray's record of the processes it started
    (``ray._private.worker._global_node``): where that record is missing or shaped otherwise
    (another Ray version), the shutdown is Ray's own, only slower.
    """
    node = getattr(getattr(ray, "_private", None), "worker", None)
    processes = getattr(getattr(node, "_global_node", None), "all_processes", None)
    if isinstance(processes, dict):
        for info in processes.get(AUTOSCALER_MONITOR, []):
            process = getattr(info, "process", None)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(timeout=1)
    ray.shutdown()


#: Ray's name for the autoscaler monitor among the processes a node starts
#: (``ray._private.ray_constants.PROCESS_TYPE_MONITOR``).
AUTOSCALER_MONITOR = "monitor"


def check_listening(address: str) -> None:
    """Refuse a ``host:port`` that nothing answers on, at once: ``ray.init`` retries such an
    address for about 14 minutes here before it gives up. Other forms (``auto``,
    ``ray://…``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise ConfigError(
            "--address",
            f"nothing answers at {address} ({error.strerror or error}); give the address "
            "`ray start --head` printed (host:port of its GCS, 6379 by default)",
        ) from None


_current: _Start | None = None


def ray_ready() -> None:
    """Wait, where Ray is first needed, for a session that is starting in the background."""
    if _current is not None:
        _current.wait()


@contextmanager
def ray_session(
    address: str | None,
    num_cpus: int | None = None,
    *,
    background: bool = False,
) -> Iterator[None]:
    """Join ``address`` or start a local Ray that lives as long as the block.

    With ``background`` the block starts while Ray is still coming up (see the module's
    docstring). A session already running (the caller's own ``ray.init``, or an enclosing
    block) is used as it is.
    """
    global _current
    if ray.is_initialized() or _current is not None:
        yield
        return
    release()
    if not address:
        warning = loopback_warning(ray.util.get_node_ip_address())
        if warning:
            print(warning, file=sys.stderr)
    start = _Start(address, num_cpus)
    _current = start
    try:
        if background and not address:
            start.begin()
        else:
            start.run()
            start.wait()
        yield
    finally:
        _current = None
        start.end()


def local_resources() -> list[dict[str, Any]]:
    """What ``ray_session`` without an address gives: this machine's CPUs and CUDA devices."""
    import torch

    return [
        {"Alive": True, "Resources": {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}}
    ]
