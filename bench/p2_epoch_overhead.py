"""P2: what one epoch costs inside Ray Tune with MLflow logging, against the bare loop.

Inside Tune an epoch is ``time_this_iter_s`` of the trial's results: training, validation,
the checkpoint and ``tune.report``, as the trial sees them. The bare epoch is the same config
in ``bench.plain_trials`` at the same torch thread count. Epoch 1 is left out on both sides
(warm-up); Ray's start-up is the command's wall time not spent in epochs, reported apart.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import Figure
from bench.p1_sweep_vs_pool import existing_store, searched_overrides
from bench.tables import markdown_table

EPOCHS = 20
TARGET_RATIO = 1.10


def tune_epochs(out: Path) -> tuple[list[float], list[float], float]:
    """Per-epoch ``time_this_iter_s`` and the loop's own ``epoch_seconds`` of a 1-trial sweep."""
    results = next((out / "tune").glob("*/result.json"))
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return (
        [row["time_this_iter_s"] for row in rows],
        [row["epoch_seconds"] for row in rows],
        sum(row["time_this_iter_s"] for row in rows),
    )


def measure(quick: bool) -> Figure:
    repeats, epochs = (1, 5) if quick else (3, EPOCHS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-p2-") as scratch:
        uri = existing_store(Path(scratch))
        for repeat in range(repeats):
            out = Path(scratch) / f"sweep-{repeat}"
            command = [
                *(
                    sys.executable,
                    "-m",
                    "margin_tune.pipeline.cli.main",
                    "tune",
                    "--space",
                    "constant",
                ),
                *("--trials", "1", "--concurrency", "1", "--searcher", "random"),
                *("--no-early-stopping", "--seed", str(repeat), "--set", f"train.epochs={epochs}"),
                *("--tracking-uri", uri),
                *("--experiment", "bench-p2", "--out", str(out)),
            ]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            command_wall = time.perf_counter() - started
            in_tune, loop_seconds, in_epochs = tune_epochs(out)
            configs, times = Path(scratch) / "configs.json", Path(scratch) / "times.json"
            configs.write_text(json.dumps(searched_overrides(out)))
            plain = [sys.executable, "-m", "bench.plain_trials", str(configs)]
            subprocess.run([*plain, "--processes", "1", "--times", str(times)], check=True)
            bare = json.loads(times.read_text())[0]
            tune_epoch = statistics.median(in_tune[1:])
            bare_epoch = statistics.median(bare[1:])
            rows.append(
                {
                    "bare epoch s": bare_epoch,
                    "Tune epoch s": tune_epoch,
                    "of which loop s": statistics.median(loop_seconds[1:]),
                    "Tune/bare": tune_epoch / bare_epoch,
                    "start-up + end s": command_wall - in_epochs,
                }
            )
    table = pd.DataFrame(rows)
    ratio = table["Tune/bare"]
    report_ms = 1000 * (table["Tune epoch s"] - table["of which loop s"]).median()
    details = "\n".join(
        [
            f"One trial of the packaged config ({epochs} epochs, one torch thread), `margin-tune "
            "tune --trials 1 --concurrency 1` against `python -m bench.plain_trials --processes "
            "1` on the same config; medians over epochs 2..N. 'of which loop' is the trial's own "
            "`epoch_seconds` (training + validation) inside Tune; the rest of a Tune epoch, "
            f"{report_ms:.0f} ms, is the checkpoint and the report. 'start-up + end' is the "
            "command's wall time outside epochs: interpreter, Ray start-up, MLflow, shutdown.",
            "",
            markdown_table(table, "{:.3f}"),
        ]
    )
    return Figure(
        id="P2",
        what="per-epoch time inside Ray Tune + MLflow vs the bare loop",
        target=f"≤ {TARGET_RATIO}×",
        value=f"{ratio.median():.3f}× ({ratio.min():.3f}–{ratio.max():.3f}, n={repeats})",
        met=bool(ratio.median() <= TARGET_RATIO),
        details=details,
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
