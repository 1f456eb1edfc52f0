"""Ctrl-C and SIGTERM during a sweep: exit 130 / 143, say how to resume, record the stopped
trials as interrupted (never completed or early-stopped), keep what resume needs; then resume
ends every trial exactly once with every epoch recorded once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import wait_for
from mlflow import MlflowClient

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.runtime.exit_codes import EXIT_SIGINT, EXIT_SIGTERM
from margin_tune.pipeline.tracking.vocabulary import KIND_TAG, STATUS_TAG

pytestmark = pytest.mark.slow

TRIALS = 3
EPOCHS = 6
EXECUTABLE = Path(sys.executable).with_name("margin-tune")


def reported_epochs(out: Path) -> int:
    return sum(path.read_text().count("\n") for path in (out / "tune").glob("*/result.json"))


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)]
)
def test_a_signal_stops_the_sweep_honestly_and_resume_finishes_it(
    signum: int, code: int, tmp_path: Path, tiny_overrides: list[str]
) -> None:
    out = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [
        item
        for o in [*tiny_overrides, f"train.epochs={EPOCHS}", "train.batches_per_epoch=40"]
        for item in ("--set", o)
    ]
    command = [
        *(str(EXECUTABLE), "tune", "--space", "dams", "--trials", str(TRIALS)),
        *("--concurrency", "1", "--no-early-stopping", "--searcher", "random"),
        *("--checkpoint-interval", "0", "--out", str(out), "--tracking-uri", uri),
        *("--experiment", "signals", *sets),
    ]
    log = tmp_path / "driver.log"
    with log.open("w") as handle:
        driver = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: reported_epochs(out) >= 2 or None, timeout=240, what="two epochs")
        driver.send_signal(signum)
        assert driver.wait(timeout=120) == code, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    text = log.read_text()
    assert f"margin-tune resume {out}" in text
    assert "\nbest: " not in text and "Traceback" not in text.split("Stop signal")[-1]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("signals").experiment_id
    runs = client.search_runs([experiment], max_results=100)
    (sweep,) = [r for r in runs if r.data.tags.get(KIND_TAG) == "sweep"]
    assert sweep.info.status == "KILLED"
    trials = [r for r in runs if STATUS_TAG in r.data.tags]
    stopped = [r for r in trials if r.data.tags[STATUS_TAG] == "interrupted"]
    assert stopped, [r.data.tags[STATUS_TAG] for r in trials]
    assert all(r.info.status == "KILLED" for r in stopped)
    assert not [r for r in trials if r.data.tags[STATUS_TAG] == "early_stopped"]

    assert main(["resume", str(out)]) == 0
    runs = client.search_runs([experiment], max_results=100)
    trials = [r for r in runs if STATUS_TAG in r.data.tags]
    assert len(trials) == TRIALS
    for run in trials:
        assert run.data.tags[STATUS_TAG] == "completed" and run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_map_at_r")]
        assert sorted(steps) == list(range(1, EPOCHS + 1))
