"""P1: a whole `margin-tune tune` sweep against the same trials in a 2-process pool, at 16 and
64 trials, with a Ray the command starts and with one already running (``--address``).

The sweep is the real command (Ray's start-up or joining, Optuna with its study in the output
directory, MLflow on sqlite, checkpoints); the pool runs the very configs the sweep ran, read
back from its ``trials.csv``, so the only difference is the machinery. Each repeat runs the
three in turn and the ratios are taken within a repeat, so a machine that drifts slows every
side. Every run is accounted (:mod:`bench.attribution`): CPU-seconds per process, read from
``/proc``, against the machine's total, and its wall time cut at what the command's log and
its MLflow runs say happened when.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from bench.attribution import Accounted, account_command, coverage, cpu_table, wall_table
from bench.common import CHECKOUT, Figure
from bench.tables import markdown_table
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import Trial

SIZES = (16, 64)
CONCURRENCY = 2
TARGET_TRIAL_SECONDS = 5.0
TARGET_RATIO = 1.15
HEAD_PORT = 6391
#: What the command's log says, and the mark it gives (first line that contains it).
LOG_MARKS = (
    ("Started a local Ray instance", "Ray up"),
    ("Connected to Ray cluster", "Ray joined"),
)


def calibrate_epochs(target_seconds: float) -> tuple[int, float]:
    """Epochs that make a default trial last about ``target_seconds`` at one torch thread."""
    base = load_config(None, ["train.num_threads=1", "train.epochs=3"])
    trial = Trial(base)
    marks: list[float] = [time.perf_counter()]
    trial.run(lambda _: marks.append(time.perf_counter()))
    epoch = statistics.median(b - a for a, b in itertools.pairwise(marks[1:]))
    return max(2, round(target_seconds / epoch)), epoch


def sweep_command(
    out: Path, uri: str, experiment: str, epochs: int, trials: int, address: str | None
) -> list[str]:
    return [
        *(sys.executable, "-m", "margin_tune.pipeline.cli.main", "tune", "--space", "constant"),
        *("--trials", str(trials), "--concurrency", str(CONCURRENCY)),
        *("--searcher", "random", "--no-early-stopping", "--seed", "0"),
        *("--set", f"train.epochs={epochs}"),
        *("--tracking-uri", uri, "--experiment", experiment),
        *(("--address", address) if address else ()),
        *("--out", str(out)),
    ]


def searched_overrides(out: Path) -> list[dict[str, object]]:
    trials = pd.read_csv(out / "trials.csv")
    columns = [c for c in trials.columns if c.startswith("config.")]
    return [
        {c.removeprefix("config."): row[c] for c in columns} | {"train.epochs": int(row["epochs"])}
        for _, row in trials.iterrows()
    ]


def existing_store(directory: Path) -> str:
    """A tracking store that already exists, as a user's does after their first sweep.

    Creating MLflow's sqlite schema (its migrations) takes seconds once per file; counting it in
    every repeat would measure a first-ever run, not the machinery.
    """
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


def sweep_env(**extra: str) -> dict[str, str]:
    """A sweep's environment: the checkout's ``margin_tune`` first on the path, so a sweep can
    run in its scratch directory (where MLflow's default ``./mlruns`` then lands)."""
    path = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def cluster_env() -> dict[str, str]:
    """What a process joining the bench's loopback cluster needs: Ray's token auth, and no
    rewrite of 127.0.0.1 to the host's address (ray-project/ray#59110)."""
    return sweep_env(RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")


@contextmanager
def running_cluster() -> Iterator[str]:
    """A one-node Ray started with ``ray start`` on loopback, as a user's cluster would be."""
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [
            *(ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={HEAD_PORT}"),
            *(f"--num-cpus={os.cpu_count()}", "--include-dashboard=false"),
            "--disable-usage-stats",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cluster_env(),
    )
    try:
        time.sleep(5)  # let its daemons settle, as a cluster that has been up a while has
        yield f"127.0.0.1:{HEAD_PORT}"
    finally:
        subprocess.run(
            [ray, "stop", "--force"], check=False, stdout=subprocess.DEVNULL, env=cluster_env()
        )


def _log_time(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def sweep_marks(out: Path, uri: str, experiment: str) -> list[tuple[str, float]]:
    """When the sweep got its Ray, started and ended its trials, from its log and its runs."""
    lines = (out / "margin-tune.log").read_text().splitlines()
    marks: list[tuple[str, float]] = []
    for needle, name in LOG_MARKS:
        found = next((line for line in lines if needle in line), None)
        if found:
            marks.append((name, _log_time(found)))
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],  # type: ignore[union-attr]
        "tags.`mlflow.parentRunId` != ''",
    )
    starts = [run.info.start_time / 1e3 for run in runs]
    ends = [run.info.end_time / 1e3 for run in runs if run.info.end_time]
    marks += [("first trial started", min(starts)), ("last trial ended", max(ends))]
    return marks


def pool_marks(events: Path) -> list[tuple[str, float]]:
    spans = json.loads(events.read_text())
    return [
        ("first trial started", min(start for start, _ in spans)),
        ("last trial ended", max(end for _, end in spans)),
    ]


def mean_table(tables: list[pd.DataFrame], keys: list[str], value: str) -> pd.DataFrame:
    """The mean of ``value`` per ``keys`` over repeats (a row missing in a repeat counts 0)."""
    joined = pd.concat([t.assign(repeat=i) for i, t in enumerate(tables)], ignore_index=True)
    wide = joined.pivot_table(index=keys, columns="repeat", values=value, aggfunc="sum")
    mean = wide.fillna(0.0).mean(axis=1).rename(f"{value} (mean of {len(tables)})")
    return mean.reset_index()


def _attribution(name: str, runs: list[Accounted], marks: list[list[tuple[str, float]]]) -> str:
    cpu = [cpu_table(run.account, run.pid) for run in runs]
    walls = [wall_table(m, run.started_at, run.wall_s) for m, run in zip(marks, runs, strict=True)]
    cpu_mean = mean_table(cpu, ["process"], "CPU s")
    summary = cpu_mean["process"].str.startswith(("(", "machine total"))
    cpu_mean = pd.concat(
        [
            cpu_mean[~summary].sort_values(cpu_mean.columns[-1], ascending=False),
            cpu_mean[summary].sort_values(cpu_mean.columns[-1]),
        ]
    )
    wall_mean = mean_table(walls, ["from", "to"], "wall s")
    order = {row["from"]: i for i, row in walls[0].iterrows()}
    wall_mean = wall_mean.sort_values("from", key=lambda s: s.map(order))
    covered = ", ".join(f"{coverage(t):.1%}" for t in cpu)
    wall_s = statistics.mean(run.wall_s for run in runs)
    return "\n".join(
        [
            f"**{name}**: wall {wall_s:.1f} s (mean); the process rows cover {covered} of the "
            "machine's busy CPU-seconds in each repeat.",
            "",
            markdown_table(cpu_mean),
            "",
            markdown_table(wall_mean),
        ]
    )


def measure_size(
    trials: int, repeats: int, epochs: int, scratch: Path, uri: str
) -> tuple[pd.DataFrame, str]:
    """Each repeat: the sweep with its own Ray, then the pool; then, with a cluster started for
    them (so that no idle cluster runs beside the others), the ``--address`` sweeps."""
    accounted: dict[str, list[Accounted]] = {"local": [], "address": [], "pool": []}
    marks: dict[str, list[list[tuple[str, float]]]] = {"local": [], "address": [], "pool": []}

    def sweep(kind: str, repeat: int, address: str | None) -> None:
        out = scratch / f"sweep-{trials}-{kind}-{repeat}"
        experiment = f"bench-p1-{trials}-{kind}-{repeat}"
        command = sweep_command(out, uri, experiment, epochs, trials, address)
        env = cluster_env() if address else sweep_env()
        accounted[kind].append(account_command(command, env=env, cwd=scratch))
        marks[kind].append(sweep_marks(out, uri, experiment))

    for repeat in range(repeats):
        sweep("local", repeat, None)
        configs = scratch / f"configs-{trials}-{repeat}.json"
        ran = searched_overrides(scratch / f"sweep-{trials}-local-{repeat}")
        configs.write_text(json.dumps(ran))
        events = scratch / f"events-{trials}-{repeat}.json"
        plain = [sys.executable, "-m", "bench.plain_trials", str(configs), "--events", str(events)]
        accounted["pool"].append(account_command([*plain, "--processes", str(CONCURRENCY)]))
        marks["pool"].append(pool_marks(events))
    with running_cluster() as head:
        for repeat in range(repeats):
            sweep("address", repeat, head)
    table = pd.DataFrame(
        {
            "trials": trials,
            "sweep_s": [run.wall_s for run in accounted["local"]],
            "sweep --address s": [run.wall_s for run in accounted["address"]],
            "pool_s": [run.wall_s for run in accounted["pool"]],
        }
    )
    table["sweep/pool"] = table["sweep_s"] / table["pool_s"]
    table["--address/pool"] = table["sweep --address s"] / table["pool_s"]
    details = "\n\n".join(
        [
            f"#### {trials} trials: where the time goes",
            _attribution("Sweep, Ray started by the command", accounted["local"], marks["local"]),
            _attribution(
                "Sweep joining a running Ray (`--address`)", accounted["address"], marks["address"]
            ),
            _attribution("Pool", accounted["pool"], marks["pool"]),
        ]
    )
    return table, details


def _spread(values: pd.Series) -> str:
    return f"{values.median():.2f}× ({values.min():.2f}–{values.max():.2f}, n={len(values)})"


def measure(quick: bool) -> Figure:
    sizes, repeats = ((4,), 1) if quick else (SIZES, 3)
    epochs, epoch_seconds = calibrate_epochs(TARGET_TRIAL_SECONDS)
    tables, sections = [], []
    with tempfile.TemporaryDirectory(prefix="bench-p1-") as directory:
        scratch = Path(directory)
        uri = existing_store(scratch)
        for trials in sizes:
            table, details = measure_size(trials, repeats, epochs, scratch, uri)
            tables.append(table)
            sections.append(details)
    every = pd.concat(tables, ignore_index=True)
    value = "; ".join(
        f"{trials} trials: {_spread(part['sweep/pool'])} the pool, "
        f"with --address {_spread(part['--address/pool'])}"
        for trials, part in every.groupby("trials")
    )
    worst = float(every.groupby("trials")[["sweep/pool", "--address/pool"]].median().max().max())
    details = "\n".join(
        [
            f"Trials of the packaged config, `constant` space, random searcher, no ASHA, "
            f"{epochs} epochs each (one epoch {epoch_seconds:.2f} s at one torch thread, so "
            f"about {epochs * epoch_seconds:.1f} s a trial); concurrency {CONCURRENCY}. Sweep: "
            "`margin-tune tune` as a subprocess (its Optuna study in the output directory, "
            "MLflow on an existing sqlite store, checkpoints every 10 s and at the last epoch), "
            "either starting its own Ray or joining one started beforehand with `ray start "
            "--head` on loopback (`--address`). Pool: `python -m bench.plain_trials` with "
            f"{CONCURRENCY} spawned processes over the configs the sweep ran. CPU rows are "
            "CPU-seconds per process over the command's run, sampled from /proc every "
            "0.25 s (bench/attribution.py); wall rows cut the command's run at what its log "
            "and its MLflow runs record (Ray up or joined, first trial started, last trial "
            "ended).",
            "",
            markdown_table(every),
            "",
            *sections,
        ]
    )
    return Figure(
        id="P1",
        what=f"sweep of {' and '.join(map(str, sizes))} ~5-s trials (concurrency 2) vs a "
        "2-process pool",
        target=f"≤ {TARGET_RATIO}× the pool at every size",
        value=value,
        met=bool(worst <= TARGET_RATIO),
        details=details,
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
