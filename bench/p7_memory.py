"""P7: peak memory of one default trial, and of the driver over a 100-trial sweep.

One trial: the packaged default config trained in a fresh interpreter (``Trial`` in a plain
loop, as ``margin-tune train`` runs it), which prints its own peak RSS (``VmHWM``). The
sweep: ``margin-tune tune`` with 100 one-epoch trials at concurrency 2 as a subprocess; its
resident memory (the driver; its peak is the kernel's ``VmHWM``) and that of the Ray processes
it started (its descendants) are read from ``/proc`` (Linux) every 0.25 s beside the number of
trials finished so far. "No growth with trial count" is read from the
driver's RSS over the second half of the trials: the slope of a least-squares line, in MB per
100 trials, must stay under ``GROWTH_LIMIT_MB``. Run: ``python -m bench.p7_memory [--quick]``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import Figure
from bench.p1_sweep_vs_pool import existing_store
from bench.tables import markdown_table
from margin_tune.trainables.parts import load_config

TRIALS = 100
GROWTH_LIMIT_MB = 20.0
SAMPLE_S = 0.25
# VmHWM, not ru_maxrss: Linux carries the forking parent's peak into a child's ru_maxrss
# across exec, so a benchmark process of 850 MB would read as the trial's peak.
ONE_TRIAL = """
from pathlib import Path
from margin_tune.trainables.config import load_config
from margin_tune.trainables.trial import Trial
Trial(load_config()).run(lambda epoch: None)
status = Path("/proc/self/status").read_text().splitlines()
print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def one_trial_peak_mb() -> float:
    """Peak RSS of a default trial's process, as the process itself reports it (kB)."""
    output = subprocess.run(
        [sys.executable, "-c", ONE_TRIAL], check=True, capture_output=True, text=True
    ).stdout
    return int(output.split()[-1]) / 1024


def finished_trials(database: Path) -> int:
    """Trial runs the driver has ended in the sweep's MLflow store (read-only, so it never
    blocks the driver's writes); the sweep's own run stays RUNNING until the end."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as store:
            (count,) = store.execute(
                "SELECT count(*) FROM runs WHERE status = 'FINISHED' AND name != 'constant'"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(count)


def sample_sweep(out: Path, database: Path, trials: int) -> pd.DataFrame:
    """RSS of the driver and of Ray's processes (its descendants) while the sweep runs."""
    command = [
        *(sys.executable, "-m", "margin_tune.pipeline.cli.main", "tune", "--space", "constant"),
        *("--trials", str(trials), "--concurrency", "2", "--searcher", "random"),
        *("--no-early-stopping", "--set", "train.epochs=1"),
        *("--tracking-uri", f"sqlite:///{database}", "--experiment", "bench-p7"),
        *("--out", str(out)),
    ]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    started = time.perf_counter()
    while driver.poll() is None:
        status = _status(driver.pid)
        if not status:
            break
        finished = finished_trials(database)
        rows.append(
            {
                "seconds": time.perf_counter() - started,
                "finished": finished,
                "driver MB": status.get("VmRSS", 0) / 1024,
                "driver peak MB": status.get("VmHWM", 0) / 1024,
                "ray MB": sum(_status(pid).get("VmRSS", 0) for pid in _descendants(driver.pid))
                / 1024,
            }
        )
        time.sleep(SAMPLE_S)
    if driver.wait() != 0:
        raise RuntimeError(f"the sweep failed: {' '.join(command)}")
    return pd.DataFrame(rows)


def _status(pid: int) -> dict[str, int]:
    """The kB fields (VmRSS, VmHWM, …) of ``/proc/<pid>/status``; empty once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if rest.strip().endswith(" kB"):
            fields[name] = int(rest.split()[0])
    return fields


def _descendants(root: int) -> list[int]:
    """Every live process below ``root``, from the parent ids in ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields resume after the last ')'.
        parent = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, frontier = [], [root]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def growth_per_100(samples: pd.DataFrame, trials: int) -> float:
    """Driver MB per 100 trials, least squares over samples with at least half the trials done
    and before the end of the sweep (its final sync and plots are not per-trial growth)."""
    window = samples[(samples["finished"] >= trials // 2) & (samples["finished"] < trials)]
    if window["finished"].nunique() < 2:
        return float("nan")
    slope = np.polyfit(window["finished"], window["driver MB"], 1)[0]
    return float(slope * 100)


def measure(quick: bool) -> Figure:
    trials = 20 if quick else TRIALS
    trial_mb = one_trial_peak_mb()
    with tempfile.TemporaryDirectory(prefix="bench-p7-") as scratch:
        database = Path(scratch) / "mlflow.db"
        existing_store(Path(scratch))
        samples = sample_sweep(Path(scratch) / "sweep", database, trials)
    growth = growth_per_100(samples, trials)
    checkpoints = [trials // 10, trials // 4, trials // 2, trials - 1]
    at = pd.DataFrame(
        [
            {"finished trials ≥": n, **samples[samples["finished"] >= n].iloc[0].to_dict()}
            for n in checkpoints
            if (samples["finished"] >= n).any()
        ]
    )
    driver_peak = samples["driver peak MB"].max()
    return Figure(
        id="P7",
        what=f"peak memory: one default trial; the driver over a {trials}-trial sweep",
        target=f"report; no growth with trial count (< {GROWTH_LIMIT_MB:g} MB per 100 trials)",
        value=(
            f"trial {trial_mb:.0f} MB; driver peak {driver_peak:.0f} MB, "
            f"growth {growth:+.1f} MB per 100 trials"
        ),
        met=bool(abs(growth) < GROWTH_LIMIT_MB),
        details="\n".join(
            [
                f"One trial: packaged default ({load_config().train.epochs} epochs), peak RSS "
                "of its process "
                f"{trial_mb:.0f} MB. Sweep: `margin-tune tune --space constant --trials {trials} "
                "--concurrency 2 --searcher random --no-early-stopping --set train.epochs=1`, "
                f"sampled every {SAMPLE_S} s ({len(samples)} samples); peak driver RSS "
                f"{driver_peak:.0f} MB, peak of Ray's processes together "
                f"{samples['ray MB'].max():.0f} MB. Driver growth over the second half of the "
                f"trials: {growth:+.1f} MB per 100 trials.",
                "",
                markdown_table(at, "{:.0f}"),
            ]
        ),
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
