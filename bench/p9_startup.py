"""P9: command start → first trial running, against a bare Ray doing the least it can.

Ours: ``margin-tune tune`` as a subprocess (2 trials of 2 epochs, concurrency 2, an existing
MLflow store), timed from the moment it is started to the start of its first trial, as its
MLflow child run records it (the driver opens a trial's run when Tune starts the trial on a
worker). The reference: a Python process that imports Ray, calls ``ray.init`` without the
dashboard and runs one task that imports torch, timed from its start to the moment that task
has torch imported. Both are new processes with the same interpreter; the figure is the ratio
of the medians, n = 5 each, alternating; each repeat's own ratio is shown beside it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import Figure
from bench.p1_sweep_vs_pool import existing_store, sweep_command, sweep_env, sweep_marks
from bench.tables import markdown_table

TARGET_RATIO = 1.25
#: Five: on this machine the bare figure alone ranged 4.4-7.7 s within minutes (2026-12-07).
REPEATS = 5
#: A bare Ray doing the least it can: its task reports when torch is imported on a worker.
BARE = """
import ray
ray.init(address="local", include_dashboard=False, log_to_driver=False)

@ray.remote
def first():
    import time
    import torch  # noqa: F401
    return time.time()

print(ray.get(first.remote()))
ray.shutdown()
"""


def bare() -> float:
    """Seconds from starting the bare process to its task having torch imported."""
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", BARE], check=True, capture_output=True, text=True
    ).stdout
    return float(done.split()[-1]) - started


def ours(scratch: Path, uri: str, repeat: int) -> tuple[float, float]:
    """Seconds from starting ``margin-tune tune`` to its first trial starting; its wall time."""
    out, experiment = scratch / f"sweep-{repeat}", f"bench-p9-{repeat}"
    command = sweep_command(out, uri, experiment, epochs=2, trials=2, address=None)
    started = time.time()
    subprocess.run(
        command,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=scratch,
        env=sweep_env(),
    )
    wall = time.time() - started
    first = dict(sweep_marks(out, uri, experiment))["first trial started"]
    return first - started, wall


def measure(quick: bool) -> Figure:
    repeats = 1 if quick else REPEATS
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-p9-") as directory:
        scratch = Path(directory)
        uri = existing_store(scratch)
        for repeat in range(repeats):
            reference = bare()
            first, wall = ours(scratch, uri, repeat)
            rows.append(
                {
                    "bare Ray: task has torch s": reference,
                    "ours: first trial s": first,
                    "ours: whole command s": wall,
                }
            )
    table = pd.DataFrame(rows)
    table["ours / bare"] = table["ours: first trial s"] / table["bare Ray: task has torch s"]
    ratio = statistics.median(table["ours: first trial s"]) / statistics.median(
        table["bare Ray: task has torch s"]
    )
    return Figure(
        id="P9",
        what="command start → first trial running, vs a bare Ray's first task with torch",
        target=f"≤ {TARGET_RATIO}× the bare Ray",
        value=(
            f"{ratio:.2f}× ({statistics.median(table['ours: first trial s']):.1f} s against "
            f"{statistics.median(table['bare Ray: task has torch s']):.1f} s, medians, "
            f"n={repeats})"
        ),
        met=bool(ratio <= TARGET_RATIO),
        details="\n".join(
            [
                "Ours: `margin-tune tune --space constant --trials 2 --concurrency 2 --set "
                "train.epochs=2` on an existing sqlite MLflow store, from the start of its "
                "process to the start of its first trial (that trial's MLflow run). Bare: "
                "`python -c` that imports Ray, `ray.init(include_dashboard=False)` and runs one "
                "task importing torch, from the start of its process to the moment torch is "
                "imported on the worker. Alternating, on an otherwise idle machine, with the "
                "checkout's bytecode compiled first (as an installed package has it: "
                "`bench.common.compile_package`).",
                "",
                markdown_table(table),
            ]
        ),
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
