"""P1: a whole `margin-tune tune` sweep against the same trials in a 2-process pool.

The sweep is the real command (Ray's start-up, Optuna, MLflow on sqlite, a checkpoint per
epoch); the pool and the sequential loop run the very configs the sweep ran, read back from
its ``trials.csv``, so the only difference is the machinery. Each repeat runs the three in
turn, and the ratio is taken within a repeat, so a machine that drifts slows both sides.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from bench.common import Figure
from bench.tables import markdown_table
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import Trial

TRIALS = 16
CONCURRENCY = 2
TARGET_TRIAL_SECONDS = 5.0
TARGET_RATIO = 1.15


def calibrate_epochs(target_seconds: float) -> tuple[int, float]:
    """Epochs that make a default trial last about ``target_seconds`` at one torch thread."""
    base = load_config(None, ["train.num_threads=1", "train.epochs=3"])
    trial = Trial(base)
    marks: list[float] = [time.perf_counter()]
    trial.run(lambda _: marks.append(time.perf_counter()))
    epoch = statistics.median(b - a for a, b in itertools.pairwise(marks[1:]))
    return max(2, round(target_seconds / epoch)), epoch


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def sweep_command(out: Path, uri: str, epochs: int, trials: int) -> list[str]:
    return [
        *(sys.executable, "-m", "margin_tune.pipeline.cli.main", "tune", "--space", "constant"),
        *("--trials", str(trials), "--concurrency", str(CONCURRENCY)),
        *("--searcher", "random", "--no-early-stopping", "--seed", "0"),
        *("--set", f"train.epochs={epochs}"),
        *("--tracking-uri", uri, "--experiment", "bench-p1"),
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


def measure(quick: bool) -> Figure:
    repeats, trials = (1, 4) if quick else (3, TRIALS)
    epochs, epoch_seconds = calibrate_epochs(TARGET_TRIAL_SECONDS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-p1-") as scratch:
        uri = existing_store(Path(scratch))
        for repeat in range(repeats):
            out = Path(scratch) / f"sweep-{repeat}"
            sweep = _timed(sweep_command(out, uri, epochs, trials))
            configs = Path(scratch) / f"configs-{repeat}.json"
            configs.write_text(json.dumps(searched_overrides(out)))
            plain = [sys.executable, "-m", "bench.plain_trials", str(configs)]
            pool = _timed([*plain, "--processes", "2"])
            sequential = _timed([*plain, "--processes", "1"])
            rows.append({"sweep_s": sweep, "pool_s": pool, "sequential_s": sequential})
    table = pd.DataFrame(rows)
    table["sweep/pool"] = table["sweep_s"] / table["pool_s"]
    table["sweep/sequential"] = table["sweep_s"] / table["sequential_s"]
    ratio = table["sweep/pool"]
    value = f"{ratio.median():.2f}× the pool ({ratio.min():.2f}–{ratio.max():.2f}, n={repeats})"
    details = "\n".join(
        [
            f"{trials} trials of the packaged config, `constant` space, random searcher, no "
            f"ASHA, {epochs} epochs each (one epoch {epoch_seconds:.2f} s at one torch thread, "
            f"so about {epochs * epoch_seconds:.1f} s a trial); concurrency {CONCURRENCY}. "
            "Sweep: `margin-tune tune` as a subprocess (Ray start-up, MLflow on an existing "
            "sqlite store, checkpoints every 10 s and at the last epoch). Pool: `python -m "
            "bench.plain_trials` with 2 spawned processes over the configs the sweep ran; "
            "sequential: the same in one process.",
            "",
            markdown_table(table),
        ]
    )
    return Figure(
        id="P1",
        what=f"sweep of {trials} ~5-s trials (concurrency 2) vs a 2-process pool",
        target=f"≤ {TARGET_RATIO}× the pool",
        value=value,
        met=bool(ratio.median() <= TARGET_RATIO),
        details=details,
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
