"""``tune --population N``: Ray Tune's population-based training over a margin scheduler's
values, end to end, and what it refuses. Real Ray, Optuna-free (PBT runs without a searcher),
real MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from tiny import set_flags

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.sweep.population import SCHEDULE_FILE
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG

EPOCHS = 4
MEMBERS = 4
#: The packaged dams space's ranges of what PBT perturbs.
RANGES = {
    "train.lr": (1e-4, 1e-2),
    "margin.target_easy_ratio": (0.7, 0.99),
    "margin.step_size": (0.005, 0.2),
}


@pytest.mark.slow
def test_a_population_learns_a_schedule_within_the_budget_and_logs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "pbt"
    code = main(
        [
            *("tune", "--space", "dams", "--population", str(MEMBERS)),
            *("--perturbation-interval", "1", "--out", str(out), "--tracking-uri", uri),
            *("--experiment", "pbt", *set_flags(f"train.epochs={EPOCHS}")),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    trials = pd.read_csv(out / "trials.csv")
    # Synchronous PBT: a copy continues from the epoch it stopped at, so the population
    # trains exactly members x epochs, the budget of a sweep of as many trials.
    assert len(trials) == MEMBERS and (trials["status"] == "completed").all()
    assert f"{MEMBERS} trials: {MEMBERS} completed" in printed
    assert f"{MEMBERS * EPOCHS} trial-epochs" in printed
    # Ray's own record of the exploits: a member copied another at least once.
    assert (out / "tune" / "pbt_global.txt").read_text().strip()
    schedule = pd.read_csv(out / SCHEDULE_FILE)
    assert schedule["epoch"].tolist() == list(range(1, EPOCHS + 1))
    best = trials.loc[trials["val_map_at_r"].idxmax()]
    # The schedule ends with the best member, on its final values; its lineage names only
    # members of this population; every perturbed value stayed in the space's range.
    assert schedule["trial_id"].iloc[-1] == best[TRIAL_ID_TAG]
    assert set(schedule["trial_id"]) <= set(trials[TRIAL_ID_TAG])
    for path, (low, high) in RANGES.items():
        assert schedule[path].between(low, high).all()
        assert schedule[path].iloc[-1] == pytest.approx(best[f"config.{path}"])
    assert schedule["margin"].iloc[-1] == pytest.approx(best["margin"])
    assert "learned schedule: schedule.csv" in printed
    # The printed replay, run as printed: each epoch trains at the schedule's μ and rate.
    assert f"--set margin.schedule={out / SCHEDULE_FILE}" in printed
    replayed = tmp_path / "replayed"
    replay = ("margin.scheduler=replay", f"margin.schedule={out / SCHEDULE_FILE}")
    flags = set_flags(f"train.epochs={EPOCHS}", *replay)
    assert main(["train", *flags, "--out", str(replayed), "-q"]) == 0
    metrics = pd.read_csv(replayed / "metrics.csv")
    assert metrics["margin"].tolist() == pytest.approx(schedule["margin"].tolist())
    assert metrics["learning_rate"].tolist() == pytest.approx(schedule["train.lr"].tolist())
    assert (out / "plots" / "schedule.png").stat().st_size > 10_000
    # MLflow: the sweep says it was PBT, and holds the schedule as a table and a plot.
    client = MlflowClient(uri)
    sweep_id = json.loads((out / "margin-tune.json").read_text())["sweep_id"]
    experiment = client.get_experiment_by_name("pbt").experiment_id
    (run,) = client.search_runs([experiment], f"tags.`margin_tune.sweep_id` = '{sweep_id}'")
    assert run.data.params["searcher"] == "pbt" and run.data.params["population"] == "4"
    assert run.data.params["pbt.perturbed"] == "margin.target_easy_ratio,margin.step_size,train.lr"
    assert run.data.metrics["trial_epochs"] == MEMBERS * EPOCHS
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [
        {"path": "schedule.json", "type": "table"}
    ]
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "schedule.json", str(tmp_path))).read_text()
    )
    assert table["columns"][:3] == ["epoch", "margin", "train.lr"]
    assert len(table["data"]) == EPOCHS
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/schedule.png" in plots


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--population", "4", "--searcher", "tpe"], "--searcher: population-based training"),
        (["--population", "1"], "--population: must be >= 2"),
        (["--population", "4", "--trials", "8"], "--trials is 8: give the same number"),
        (["--population", "4", "--perturbation-interval", "3"], "between 1 and train.epochs - 1"),
        (["--population", "4", "--space", "SPACE"], "--population: space fixed_lr searches none"),
        (["--population", "4", "--warm-start", "s1"], "--warm-start: seeds a searcher's study"),
        ([], "--trials: required (or --population N"),
    ],
)
def test_what_a_population_cannot_do_exits_2_before_anything_starts(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    fixed = tmp_path / "fixed_lr.yaml"
    fixed.write_text(
        "parameters:\n  margin.initial_margin: {distribution: uniform, low: 0.1, high: 0.5}\n"
    )
    flags = [str(fixed) if flag == "SPACE" else flag for flag in flags]
    space = [] if "--space" in flags else ["--space", "dams"]
    command = ["tune", *space, *flags, "--out", str(out), *set_flags("train.epochs=3")]
    assert main(command) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_a_population_killed_mid_way_resumes_to_the_same_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the driver and its Ray while members are part-way, then ``resume``: every
    member ends at the last epoch, the population's trial-epochs stay members x epochs, and the
    learned schedule covers every epoch once."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "pbt"
    epochs = 6
    log = tmp_path / "driver.log"
    command = [
        *(str(Path(sys.executable).with_name("margin-tune")), "tune", "--space", "dams"),
        *("--population", str(MEMBERS), "--perturbation-interval", "2"),
        *("--checkpoint-interval", "0", "--out", str(out), "--tracking-uri", uri),
        *("--experiment", "pbt-resume", *set_flags(f"train.epochs={epochs}")),
    ]
    with log.open("w") as handle:
        driver = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        # Past the first exploit (epoch 2) and before the end: some member reported epoch 3.
        while time.monotonic() < deadline and not _reached(out, 3):
            assert driver.poll() is None, log.read_text()
            time.sleep(0.2)
        assert _reached(out, 3), "no member reached epoch 3 in time"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        _wait_until_gone(driver.pid)
    assert not _reached(out, epochs + 1)
    assert "trial-epochs" not in log.read_text(), "killed after the end: nothing to resume"

    assert main(["resume", str(out)]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == MEMBERS and (trials["status"] == "completed").all()
    assert (trials["epochs"] == epochs).all()
    schedule = pd.read_csv(out / SCHEDULE_FILE)
    assert schedule["epoch"].tolist() == list(range(1, epochs + 1))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("pbt-resume").experiment_id
    (sweep,) = client.search_runs([experiment], "tags.`margin_tune.kind` = 'sweep'")
    assert sweep.info.status == "FINISHED"
    assert sweep.data.metrics["trial_epochs"] == MEMBERS * epochs


def _reached(out: Path, epoch: int) -> bool:
    """Some member of the population in ``out`` reported ``epoch``."""
    for result in (out / "tune").glob("*/result.json"):
        lines = result.read_text().splitlines()
        if any(json.loads(line).get("training_iteration", 0) >= epoch for line in lines if line):
            return True
    return False


def _wait_until_gone(group: int, timeout: float = 60.0) -> None:
    """Until every process of the killed group (the driver's Ray among them) has exited, so
    that the next test's Ray meets none of it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
