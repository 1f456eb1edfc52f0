"""Where a command's seconds go: CPU-seconds per process, read from ``/proc``, and wall time by
phase.

:class:`ProcessAccount` samples every process on the machine (``/proc/PID/stat``: user + system
ticks) a few times a second while a command runs, and ``/proc/stat`` for the machine's total,
so the per-process rows can be checked against what the cores actually spent (``coverage``). A
process that is born and dies between two samples is missed, and so is the CPU a process spends
after its last sample; both show up as the gap between the rows and the machine's total, which
the tables print. Processes are named by role from their command lines: the driver (the
command itself), Ray's daemons, Ray's worker processes (which run the trials), a pool's worker
processes, and everything else on the machine.

Run by hand: ``python -m bench.attribution -- margin-tune tune ...`` prints the table of one
command.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

TICK = os.sysconf("SC_CLK_TCK")
#: Seconds between samples: a process that lives less than this may be missed.
INTERVAL_S = 0.25

#: Command-line fragments of Ray's worker processes: ``setup_worker.py`` execs
#: ``default_worker.py``, which retitles itself ``ray::IDLE`` or ``ray::<actor>.<method>``.
RAY_WORKER = ("setup_worker.py", "default_worker.py", "ray::")
#: Command-line fragments of Ray's daemons (Ray 2.60), in the order they are tested.
RAY_ROLES: tuple[tuple[str, str], ...] = (
    ("/gcs_server ", "Ray GCS server"),
    ("/raylet ", "Ray raylet"),
    ("dashboard/agent.py", "Ray dashboard agent"),
    ("ray::DashboardAgent", "Ray dashboard agent"),
    ("runtime_env/agent/main.py", "Ray runtime-env agent"),
    ("ray::RuntimeEnvAgent", "Ray runtime-env agent"),
    ("log_monitor.py", "Ray log monitor"),
    ("dashboard/dashboard.py", "Ray dashboard"),
    ("autoscaler/_private/monitor.py", "Ray autoscaler monitor"),
    ("ray/util/client/server", "Ray client server"),
)
POOL_WORKER = "multiprocessing.spawn"


@dataclasses.dataclass
class Seen:
    """One process as last sampled."""

    pid: int
    ppid: int
    started: int  # clock ticks since boot: with the pid, a process's identity
    command: str
    first_cpu: float  # CPU-seconds when first seen (before the window: not counted)
    cpu: float
    counted_from_birth: bool  # born after the window opened: all its CPU is in the window
    titles: set[str] = dataclasses.field(default_factory=set)  # a Ray worker's titles


def _read_stat(pid: int) -> tuple[int, int, float] | None:
    """``(ppid, start ticks, user + system seconds)`` of ``pid``, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid, utime, stime, started = int(fields[1]), int(fields[11]), int(fields[12]), int(fields[19])
    return ppid, started, (utime + stime) / TICK


def _program(command: str) -> str:
    """The program and, for Python, its script: the rest may name other daemons' files."""
    return " ".join(word for word in command.split()[:3] if word != "-u") + " "


def _is_ray_worker(command: str) -> bool:
    return any(fragment in _program(command) for fragment in RAY_WORKER)


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def machine_cpu_seconds() -> float:
    """CPU-seconds the machine's cores spent busy since boot (``/proc/stat``: all but idle and
    iowait; guest time is already in user)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


class ProcessAccount:
    """Samples every process's CPU time while the block runs (a background thread)."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.seen: dict[tuple[int, int], Seen] = {}
        self.wall_s = 0.0
        self.machine_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-account", daemon=True)
        self._opened = False

    def __enter__(self) -> ProcessAccount:
        self._sample(opening=True)
        self._opened = True
        self._machine0 = machine_cpu_seconds()
        self._wall0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(opening=False)
        self.wall_s = time.perf_counter() - self._wall0
        self.machine_s = machine_cpu_seconds() - self._machine0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample(opening=False)

    def _sample(self, opening: bool) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _read_stat(pid)
            if stat is None:
                continue
            ppid, started, cpu = stat
            key = (pid, started)
            known = self.seen.get(key)
            if known is None:
                born_inside = not opening
                self.seen[key] = Seen(
                    pid, ppid, started, _command(pid), 0.0 if born_inside else cpu, cpu, born_inside
                )
            else:
                known.cpu = cpu
                # A forked worker execs, then retitles itself: keep the latest command line.
                now = _command(pid)
                known.command = now or known.command
                if now.startswith("ray::"):
                    known.titles.add(now.split()[0])

    def processes(self) -> list[Seen]:
        return list(self.seen.values())


def descendants(account: ProcessAccount, root: int) -> set[tuple[int, int]]:
    """The processes under ``root`` (its children, theirs, ...), by identity."""
    by_parent: dict[int, list[Seen]] = {}
    for process in account.processes():
        by_parent.setdefault(process.ppid, []).append(process)
    found: set[tuple[int, int]] = set()
    todo = [root]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            key = (child.pid, child.started)
            if key not in found:
                found.add(key)
                todo.append(child.pid)
    return found


def role(process: Seen, driver: int, own: set[int]) -> str:
    """What a process is, from its pid and command line."""
    if process.pid == driver:
        return "driver (the command)"
    program = _program(process.command)
    if POOL_WORKER in process.command:
        return "pool worker processes"
    for fragment, name in RAY_ROLES:
        if fragment in program:
            return name
    if _is_ray_worker(process.command):
        busy = sorted(title for title in process.titles if title != "ray::IDLE")
        return f"Ray workers ({', '.join(busy)})" if busy else "Ray workers, idle throughout"
    if process.pid in own:
        return "bench (this process and its sampler)"
    if process.command == "":
        return "kernel threads"
    return "other processes on the machine"


def cpu_table(account: ProcessAccount, driver: int) -> pd.DataFrame:
    """CPU-seconds per role over the window, with the machine's total and the unattributed gap."""
    own = {os.getpid()}
    rows: dict[str, dict[str, float]] = {}
    for process in account.processes():
        spent = process.cpu - process.first_cpu
        if spent <= 0:
            continue
        name = role(process, driver, own)
        row = rows.setdefault(name, {"CPU s": 0.0, "processes": 0})
        row["CPU s"] += spent
        row["processes"] += 1
    table = pd.DataFrame(
        [{"process": name, **values} for name, values in rows.items()],
        columns=["process", "CPU s", "processes"],
    ).sort_values("CPU s", ascending=False)
    attributed = float(table["CPU s"].sum())
    gap = account.machine_s - attributed
    table = pd.concat(
        [
            table,
            pd.DataFrame(
                [
                    {"process": "(not seen: exited between samples, interrupts)", "CPU s": gap},
                    {"process": "machine total (/proc/stat)", "CPU s": account.machine_s},
                ]
            ),
        ],
        ignore_index=True,
    )
    table["share of the total"] = table["CPU s"] / account.machine_s
    table["processes"] = table["processes"].fillna(0).astype(int)
    return table


def coverage(table: pd.DataFrame) -> float:
    """The rows' sum over the machine's total: 1.0 when every CPU-second has a process."""
    attributed = table[~table["process"].str.startswith(("(", "machine total"))]["CPU s"].sum()
    total = float(table[table["process"] == "machine total (/proc/stat)"]["CPU s"].iloc[0])
    return float(attributed / total)


def wall_table(
    marks: Sequence[tuple[str, float]], started_at: float, wall_s: float
) -> pd.DataFrame:
    """The command's wall time cut at ``marks`` (name, ``time.time()``): one row per stretch
    between consecutive marks, from the start to the end; the rows add up to ``wall_s``."""
    ended_at = started_at + wall_s
    points = [("start", started_at), *sorted(marks, key=lambda mark: mark[1]), ("exit", ended_at)]
    rows = [
        {"from": a, "to": b, "wall s": max(0.0, min(tb, ended_at) - max(ta, started_at))}
        for (a, ta), (b, tb) in itertools.pairwise(points)
    ]
    table = pd.DataFrame(rows)
    table["share of the wall"] = table["wall s"] / wall_s
    return table


@dataclasses.dataclass
class Accounted:
    """One command run under a :class:`ProcessAccount`."""

    account: ProcessAccount
    pid: int
    wall_s: float
    started_at: float  # time.time() just before the command was started


def account_command(
    command: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Accounted:
    """Run ``command`` to its end under a :class:`ProcessAccount` (in ``cwd``)."""
    with ProcessAccount() as account:
        started_at, started = time.time(), time.perf_counter()
        child = subprocess.Popen(
            list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd
        )
        code = child.wait()
        wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}")
    return Accounted(account, child.pid, wall, started_at)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    run = account_command(arguments)
    print(f"wall {run.wall_s:.1f} s; machine CPU {run.account.machine_s:.1f} s")
    print(cpu_table(run.account, run.pid).to_string(index=False))
