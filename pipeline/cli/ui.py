"""``margin-tune ui``: the MLflow UI (and optuna-dashboard) on the project's stores, on loopback.

Why a command rather than "run ``mlflow server`` yourself": the default store is a SQLite file
whose relative URI the sweeps made absolute, MLflow would silently create an empty database at
a mistyped path, and a viewer should start fast and bind to loopback only. This command finds the
store exactly as ``tune``/``compare``/``report`` do, refuses a missing one, starts the servers
in their own process groups, waits until they answer HTTP before printing the URLs, and on
Ctrl-C or SIGTERM stops each whole group (``mlflow server`` runs its web server as a child), so
no process is left listening on the ports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from margin_tune.pipeline.outputs.manifest import MANIFEST_FILE
from margin_tune.pipeline.runtime.secrets import redact_uri
from margin_tune.pipeline.tracking.reader import open_client
from margin_tune.pipeline.tracking.store import DEFAULT_EXPERIMENT, resolve_tracking_uri
from margin_tune.trainables.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_OPTUNA_PORT = 8080
#: A cold ``mlflow server`` took 20–40 s to answer on the loaded 2-core machine.
START_TIMEOUT_S = 180.0
_STOP_GRACE_S = 10.0
#: For a viewer: one web worker, and no GenAI job runner beside it (it halves the start time).
_MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
#: Hosts that keep the UI on this machine; any other ``--host`` is warned about.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    parser.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help="experiment whose page is printed (default margin-tune)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="MLflow UI port (5000)")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="interface to bind (default 127.0.0.1: only this machine can connect)",
    )
    optuna = parser.add_argument_group("optuna-dashboard (pip install 'margin-tune[ui]')")
    source = optuna.add_mutually_exclusive_group()
    source.add_argument(
        "--storage",
        help="Optuna storage of a sweep (its --storage): a journal file or an RDB URL",
    )
    source.add_argument(
        "--sweep-dir",
        type=Path,
        help="a tune or compare output directory: its --storage is shown in optuna-dashboard",
    )
    optuna.add_argument(
        "--optuna-port", type=int, default=DEFAULT_OPTUNA_PORT, help="dashboard port (8080)"
    )


@dataclass(frozen=True)
class _Command:
    """How to start one server, and where it answers."""

    name: str
    argv: list[str]
    url: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Server:
    """A started server: its whole process group is stopped together."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def run(args: argparse.Namespace) -> int:
    uri = resolve_tracking_uri(args.tracking_uri)
    storage = args.storage or (_manifest_storage(args.sweep_dir) if args.sweep_dir else None)
    remote = uri.startswith(("http://", "https://"))
    commands: list[_Command] = []
    ports: list[tuple[str, int]] = []
    if not remote:
        commands.append(_mlflow_command(uri, args.host, args.port))
        ports.append(("--port", args.port))
    if storage:
        commands.append(_dashboard_command(storage, args.host, args.optuna_port))
        ports.append(("--optuna-port", args.optuna_port))
    _check_ports(args.host, ports)
    if args.host not in LOOPBACK_HOSTS:
        print(
            f"margin-tune: warning: --host {args.host} makes the UI reachable from the network; "
            "the MLflow UI has no authentication of its own",
            file=sys.stderr,
        )
    if not commands:
        print(
            f"{redact_uri(uri)} is an MLflow server: it is already the MLflow UI, open it in a "
            "browser."
        )
        return 0
    experiment_id = None if remote else _experiment_id(uri, args.experiment)
    logs = Path(tempfile.mkdtemp(prefix="margin-tune-ui-"))
    with _signals_stop_servers(), ExitStack() as stack:
        try:
            servers = [stack.enter_context(_started(command, logs)) for command in commands]
            for server in servers:
                _wait_until_up(server)
            if remote:
                print(f"MLflow UI:        {redact_uri(uri)} (the tracking server itself)")
            else:
                page = "" if experiment_id is None else f"#/experiments/{experiment_id}/runs"
                print(f"MLflow UI:        {servers[0].url}/{page}  ({redact_uri(uri)})")
                if experiment_id is None:
                    print(f"(no experiment {args.experiment!r} in the store yet)")
            if storage:
                print(f"optuna-dashboard: {servers[-1].url}/  ({redact_uri(storage)})")
            print(f"server logs in {logs}; press Ctrl-C to stop", flush=True)
            stopped = _wait_until_one_stops(servers)
        except KeyboardInterrupt:
            # A second Ctrl-C must not cut the stopping short and orphan a server.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("\nstopping", file=sys.stderr)
            return 0
        except _ServerError as error:
            print(f"margin-tune: error: {error}", file=sys.stderr)
            return 1
    print(
        f"margin-tune: error: {stopped.name} stopped with code {stopped.process.returncode}:\n"
        + _tail(stopped.log),
        file=sys.stderr,
    )
    return 1


class _ServerError(RuntimeError):
    """A server did not start."""


def _manifest_storage(out: Path) -> str:
    """The Optuna storage URL the manifest of a tune or compare output directory recorded."""
    path = out / MANIFEST_FILE
    try:
        options = json.loads(path.read_text(encoding="utf-8")).get("options") or {}
    except (OSError, ValueError, AttributeError) as error:
        raise ConfigError("--sweep-dir", f"cannot read {path}: {error}") from None
    storage = options.get("storage") if isinstance(options, dict) else None
    if not storage:
        raise ConfigError(
            "--sweep-dir",
            f"the sweep in {out} kept its Optuna study in memory (as one with --address and "
            "without --storage does): there is no study to show",
        )
    return str(storage)


def _check_ports(host: str, ports: list[tuple[str, int]]) -> None:
    """Refuses a port out of range or already taken, naming the flag, before anything starts."""
    seen: dict[int, str] = {}
    for flag, port in ports:
        if not 1 <= port <= 65535:
            raise ConfigError(flag, f"must be in 1..65535, got {port}")
        if port in seen:
            raise ConfigError(flag, f"{port} is also {seen[port]}; give each server its own port")
        seen[port] = flag
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the servers bind: a port in TIME_WAIT after a previous run is free to them.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise ConfigError(
                    flag, f"cannot listen on {host}:{port} ({error.strerror}); choose another"
                ) from None


def _experiment_id(uri: str, name: str) -> str | None:
    experiment = open_client(uri).get_experiment_by_name(name)
    return None if experiment is None else experiment.experiment_id


def _mlflow_command(uri: str, host: str, port: int) -> _Command:
    """The store reaches the server through its environment (``MLFLOW_BACKEND_STORE_URI``),
    never its command line, which every user of the machine can read in ``ps``."""
    argv = [sys.executable, "-m", "mlflow", "server"]
    argv += ["--host", host, "--port", str(port), "--workers", "1"]
    env = {**_MLFLOW_ENV, "MLFLOW_BACKEND_STORE_URI": uri}
    return _Command("mlflow server", argv, f"http://{host}:{port}", env)


def _dashboard_command(storage: str, host: str, port: int) -> _Command:
    """optuna-dashboard, an optional extra: checked here, before anything starts."""
    script = Path(sys.executable).with_name("optuna-dashboard")
    program = str(script) if script.is_file() else shutil.which("optuna-dashboard")
    if importlib.util.find_spec("optuna_dashboard") is None or program is None:
        raise ConfigError(
            "--storage",
            "optuna-dashboard is not installed; pip install 'margin-tune[ui]' "
            "(or pip install optuna-dashboard)",
        )
    argv = [program, storage, "--host", host, "--port", str(port)]
    return _Command("optuna-dashboard", argv, f"http://{host}:{port}")


@contextmanager
def _started(command: _Command, logs: Path) -> Iterator[_Server]:
    """Runs ``command`` in its own session (so Ctrl-C reaches us, not it) and stops its group."""
    log = logs / f"{command.name.replace(' ', '-')}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **command.env},
        )
    try:
        yield _Server(command.name, process, command.url, log)
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group, SIGKILL to what is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + _STOP_GRACE_S
        while time.monotonic() < deadline and _group_alive(process):
            time.sleep(0.1)
        if not _group_alive(process):
            return


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    process.poll()
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_until_up(server: _Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise _ServerError(
                f"{server.name} exited with code {server.process.returncode}:\n" + _tail(server.log)
            )
        try:
            with urllib.request.urlopen(server.url + "/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset, timed out, or an HTTP error status
            time.sleep(0.3)
    raise _ServerError(f"{server.name} did not answer {server.url} in {START_TIMEOUT_S:.0f} s")


def _wait_until_one_stops(servers: list[_Server]) -> _Server:
    """Blocks while every server runs; returns the first one that stopped by itself."""
    while True:
        for server in servers:
            if server.process.poll() is not None:
                return server
        time.sleep(0.5)


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def _signals_stop_servers() -> Iterator[None]:
    """SIGTERM (a service manager, ``kill``) stops the servers like Ctrl-C; handlers restored."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
