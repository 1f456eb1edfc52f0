"""P8: trials per hour with 0.25 GPU per trial against 1 GPU per trial, on a CUDA machine.

Both sides are the real ``margin-tune tune`` (random searcher, no ASHA, the same 16 configs by
seed) on one GPU; with 0.25 GPU four trials share it, with 1 GPU they run one at a time. Without
a CUDA device the figure is reported as not measured. Run: ``python -m bench.p8_fractional_gpu``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from bench.common import Figure
from bench.p1_sweep_vs_pool import existing_store, sweep_command
from bench.tables import markdown_table

TRIALS = 16
EPOCHS = 10
TARGET_RATIO = 3.0


def measure(quick: bool) -> Figure:
    what = "trials/hour at 0.25 GPU per trial vs 1 GPU per trial"
    target = f"≥ {TARGET_RATIO:g}×"
    if not torch.cuda.is_available():
        return Figure(
            id="P8",
            what=what,
            target=target,
            value="not measured: no CUDA device on this machine",
            met=None,
            details=f"torch {torch.__version__}: torch.cuda.device_count() = "
            f"{torch.cuda.device_count()}. Run `python -m bench --only P8` on a CUDA machine.",
        )
    trials, epochs = (4, 3) if quick else (TRIALS, EPOCHS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-p8-") as scratch:
        uri = existing_store(Path(scratch))
        for gpus, concurrency in ((1.0, 1), (0.25, 4)):
            command = sweep_command(Path(scratch) / f"gpu-{gpus}", uri, epochs, trials)
            command += ["--gpus-per-trial", str(gpus), "--concurrency", str(concurrency)]
            command += ["--set", "train.device=cuda"]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            wall = time.perf_counter() - started
            rows.append(
                {
                    "gpus per trial": gpus,
                    "concurrency": concurrency,
                    "wall s": wall,
                    "trials/hour": trials * 3600 / wall,
                }
            )
    table = pd.DataFrame(rows)
    ratio = float(table["trials/hour"].iloc[1] / table["trials/hour"].iloc[0])
    return Figure(
        id="P8",
        what=what,
        target=target,
        value=f"{ratio:.2f}× ({torch.cuda.get_device_name(0)})",
        met=ratio >= TARGET_RATIO,
        details=f"{trials} trials × {epochs} epochs, packaged config on CUDA.\n\n"
        + markdown_table(table),
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
