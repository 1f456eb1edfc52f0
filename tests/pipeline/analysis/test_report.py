"""``margin-tune report`` against a real SQLite MLflow store written by the real Tracker.

The store mimics what ``tune`` and ``compare`` log (parent runs, nested trials with per-epoch
metrics, final runs), without Ray, so the whole file runs in seconds. Every test runs twice: on a
store tagged as today's code tags it, and on one tagged with the bare names of before 0.2
(``trial_status``, ``method``...), which a report reads the same. Expected rows, orders and
bests are computed here from ``SWEEPS`` and ``FINALS``, never read back from the report.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    BEST_TRIAL_TAG,
    COMPARISON_KIND,
    DATASET_TAG,
    FINAL_STAGE,
    KIND_TAG,
    METHOD_TAG,
    PREVIOUS_NAMES,
    SCHEDULER_TAG,
    SEED_TAG,
    STAGE_TAG,
    STATUS_TAG,
    SWEEP_KIND,
)

EXPERIMENT = "report-tests"
MAX_ONLY = "report-tests-max"
"""An experiment whose sweeps all maximise, so its best-per-method table can be sorted."""


@dataclass(frozen=True)
class LoggedTrial:
    trial_id: str
    status: str
    params: dict[str, float]
    history: dict[str, list[float]]
    """Per metric, its value at epochs 1, 2, …"""


@dataclass(frozen=True)
class LoggedSweep:
    sweep_id: str
    name: str
    scheduler: str
    metric: str
    mode: str
    trials: list[LoggedTrial]
    within: str | None = None
    """The comparison's sweep id, when the sweep is nested under one."""


def _trial(trial_id: str, status: str, mu: float, lr: float, **history: list[float]) -> LoggedTrial:
    return LoggedTrial(trial_id, status, {"margin.initial_margin": mu, "train.lr": lr}, history)


SWEEPS = [
    LoggedSweep(
        "dams-one",
        "dams",
        "dams",
        "val_roc_auc",
        "max",
        [
            _trial("t1", "completed", 0.2, 1e-3, val_roc_auc=[0.80, 0.85, 0.90], margin=[0.2] * 3),
            # Its best epoch beats every other trial, its last epoch does not: last counts.
            _trial("t2", "early_stopped", 0.3, 1e-2, val_roc_auc=[0.95, 0.88], margin=[0.5, 0.6]),
            _trial("t3", "completed", 0.25, 3e-3, val_roc_auc=[0.7, 0.8, 0.93], margin=[0.1] * 3),
            # The highest value of all, but a failed trial is never best.
            _trial("t4", "failed", 0.4, 2e-2, val_roc_auc=[0.99], margin=[0.4]),
        ],
    ),
    LoggedSweep(
        "const-1",
        "constant",
        "constant",
        "val_roc_auc",
        "max",
        [
            _trial("c1", "completed", 0.5, 1e-3, val_roc_auc=[0.6, 0.91], margin=[0.5, 0.5]),
            _trial("c2", "completed", 0.6, 2e-3, val_roc_auc=[0.7, 0.87], margin=[0.6, 0.6]),
        ],
    ),
    LoggedSweep(
        "lin-eer",
        "linear",
        "linear",
        "val_eer",
        "min",
        [
            _trial("l1", "completed", 0.1, 1e-3, val_eer=[0.3, 0.20], val_roc_auc=[0.8, 0.85]),
            _trial("l2", "completed", 0.2, 1e-3, val_eer=[0.3, 0.12], val_roc_auc=[0.8, 0.82]),
            _trial("l3", "completed", 0.3, 1e-3, val_eer=[0.3, 0.25], val_roc_auc=[0.8, 0.89]),
        ],
    ),
    LoggedSweep(
        "cmp-dams",
        "dams",
        "dams",
        "val_roc_auc",
        "max",
        [
            _trial("n1", "completed", 0.2, 1e-3, val_roc_auc=[0.90, 0.92]),
            _trial("n2", "completed", 0.3, 1e-3, val_roc_auc=[0.90, 0.96]),
        ],
        within="cmp-1",
    ),
]
COMPARISON_ID = "cmp-1"
METHODS = ["dams", "constant"]
#: recall_at_4 is not among the default Ks: a comparison on CUB or Cars logs it.
TEST_METRICS = ("roc_auc", "eer", "tar_at_far_1e-3", "recall_at_1", "map_at_r", "recall_at_4")
#: (method, seed, status, test_roc_auc); other test metrics follow from it.
FINALS = [
    ("dams", 0, "completed", 0.95),
    ("dams", 1, "completed", 0.93),
    ("dams", 2, "completed", 0.94),
    ("constant", 0, "completed", 0.90),
    ("constant", 1, "collapsed", 0.50),
    ("constant", 2, "completed", 0.92),
    ("constant", 3, "failed", 0.10),
]
#: Statuses whose test metrics count: a collapsed network is an outcome of its method.
MEASURED = ("completed", "collapsed")


def _test_metrics(roc_auc: float) -> dict[str, float]:
    return {f"test_{name}": roc_auc - index / 10 for index, name in enumerate(TEST_METRICS)}


def _last(trial: LoggedTrial, metric: str) -> float:
    return trial.history[metric][-1] if metric in trial.history else math.nan


def _write_sweep(
    tracker: Tracker, sweep: LoggedSweep, parent: str | None, tag: dict[str, str]
) -> str:
    run = tracker.sweep_run(
        sweep.name,
        params={"space": sweep.name, "trials": len(sweep.trials), "searcher": "tpe"}
        | {"metric": sweep.metric, "mode": sweep.mode},
        tags={KIND_TAG: SWEEP_KIND, tag[DATASET_TAG]: "synthetic"},
        parent_run_id=parent,
        sweep_id=sweep.sweep_id,
    )
    for trial in sweep.trials:
        child = tracker.child_run(
            run,
            trial.trial_id,
            name=f"{sweep.scheduler} μ0={trial.params['margin.initial_margin']}",
            params={**trial.params, "margin.scheduler": sweep.scheduler, "train.epochs": 3},
            tags={
                tag[SCHEDULER_TAG]: sweep.scheduler,
                tag[SEED_TAG]: "0",
                tag[STATUS_TAG]: "running",
            },
        )
        for epoch in range(len(next(iter(trial.history.values())))):
            values = {name: series[epoch] for name, series in trial.history.items()}
            # Today's trials log their epoch (what report reads); before 0.2 they did not, and
            # report reads the step of the sweep's metric instead.
            logged = {} if tag else {"epoch": float(epoch + 1)}
            values |= {"train_loss": 1.0 / (epoch + 1), **logged}
            tracker.log_epoch(child, values, step=epoch + 1)
        tracker.set_tags(child, {tag[STATUS_TAG]: trial.status})
        tracker.end_run(child, "FAILED" if trial.status == "failed" else "FINISHED")
    scored = [t for t in sweep.trials if t.status != "failed"]
    pick = max if sweep.mode == "max" else min
    best = pick(scored, key=lambda trial: _last(trial, sweep.metric))
    tracker.log_metrics(run, {f"best_{sweep.metric}": _last(best, sweep.metric)})
    tracker.set_tags(run, {tag[BEST_TRIAL_TAG]: best.trial_id})
    tracker.end_run(run)
    return run


class _Names(dict[str, str]):
    """Tag keys as one version of margin-tune wrote them: today's, or before 0.2."""

    def __init__(self, before_namespace: bool) -> None:
        super().__init__(PREVIOUS_NAMES if before_namespace else {})

    def __missing__(self, key: str) -> str:
        return key


@pytest.fixture(scope="module", params=["current names", "names before 0.2"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The store's URI and the run id of every sweep and of the comparison, by sweep id."""
    tag = _Names(before_namespace=request.param != "current names")
    root = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_ids: dict[str, str] = {}
    with Tracker(uri, EXPERIMENT, artifact_location=(root / "artifacts").as_uri()) as tracker:
        comparison = tracker.sweep_run(
            "compare dams vs constant",
            params={"methods": ",".join(METHODS), "metric": "val_roc_auc", "searcher": "tpe"},
            tags={KIND_TAG: COMPARISON_KIND},
            sweep_id=COMPARISON_ID,
        )
        run_ids[COMPARISON_ID] = comparison
        for sweep in SWEEPS:
            parent = comparison if sweep.within == COMPARISON_ID else None
            run_ids[sweep.sweep_id] = _write_sweep(tracker, sweep, parent, tag)
        for index, (method, seed, status, roc_auc) in enumerate(FINALS):
            final = tracker.child_run(
                comparison,
                f"final-{index}",
                params={"margin.scheduler": method, "seed": seed},
                tags={tag[SCHEDULER_TAG]: method, tag[METHOD_TAG]: method, tag[SEED_TAG]: str(seed)}
                | {tag[STATUS_TAG]: status, STAGE_TAG: FINAL_STAGE},
            )
            # A final run's validation score outranks every tuning trial: it must not count.
            tracker.log_epoch(final, {"val_roc_auc": 0.999, **_test_metrics(roc_auc)}, step=3)
            tracker.end_run(final)
        tracker.end_run(comparison)
    with Tracker(uri, MAX_ONLY) as tracker:
        for sweep in SWEEPS[:2]:
            _write_sweep(tracker, sweep, None, tag)
    return {"uri": uri, **run_ids}


def report(
    store: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    *args: str,
    experiment: str = EXPERIMENT,
) -> str:
    code = main(["report", "--tracking-uri", store["uri"], "--experiment", experiment, *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def csv_tables(text: str) -> dict[str, pd.DataFrame]:
    """Splits a multi-table CSV report into its titled tables."""
    tables = {}
    for block in text.strip().split("\n\n"):
        title, _, body = block.partition("\n")
        tables[title.removeprefix("# ")] = pd.read_csv(io.StringIO(body))
    return tables


def expected_best_per_method() -> dict[str, str]:
    """Per method, the trial with the best last-epoch value of its sweep's metric."""
    best: dict[str, tuple[float, str]] = {}
    for sweep in SWEEPS:
        sign = 1 if sweep.mode == "max" else -1
        for trial in sweep.trials:
            value = _last(trial, sweep.metric)
            if trial.status == "failed" or math.isnan(value):
                continue
            if sweep.scheduler not in best or sign * value > best[sweep.scheduler][0]:
                best[sweep.scheduler] = (sign * value, trial.trial_id)
    return {method: trial_id for method, (_, trial_id) in best.items()}


def test_overview_lists_every_sweep_and_comparison(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tables = csv_tables(report(store, capsys, "--format", "csv"))
    parents = tables[f"sweeps and comparisons in '{EXPERIMENT}'"].set_index("sweep_id")
    assert set(parents.index) == {COMPARISON_ID, *(sweep.sweep_id for sweep in SWEEPS)}
    assert parents.loc[COMPARISON_ID, "kind"] == "comparison"
    assert parents.loc[COMPARISON_ID, "trials"] == len(SWEEPS[-1].trials)
    assert parents.loc["cmp-dams", "parent"] == COMPARISON_ID
    first = SWEEPS[0]
    assert parents.loc[first.sweep_id, "trials"] == len(first.trials)
    assert parents.loc[first.sweep_id, "best_trial_id"] == "t3"
    assert parents.loc[first.sweep_id, "best"] == pytest.approx(0.93)
    assert (parents["status"] == "FINISHED").all()


def test_best_per_method_is_the_best_last_epoch_of_tuning_trials_only(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    best = csv_tables(report(store, capsys, "--format", "csv"))["best tuning trial per method"]
    assert dict(zip(best["method"], best["trial_id"], strict=True)) == expected_best_per_method()
    assert not best["trial_id"].str.startswith("final-").any()
    linear = best.set_index("method").loc["linear"]
    assert (linear["metric"], linear["mode"], linear["best"]) == ("val_eer", "min", 0.12)
    dams = best.set_index("method").loc["dams"]
    assert dams["trials"] == len(SWEEPS[0].trials) + len(SWEEPS[-1].trials)


def test_best_per_method_sorts_by_any_metric_when_sweeps_share_a_mode(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = report(store, capsys, "--sort", "margin", "--format", "csv", experiment=MAX_ONLY)
    best = csv_tables(text)["best tuning trial per method"]
    assert list(best["margin"]) == sorted(best["margin"], reverse=True)
    assert list(best["trial_id"]) == ["c1", "t3"]


def test_sweep_lists_its_trials_best_first_with_searched_params(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = SWEEPS[0]
    trials = pd.read_csv(io.StringIO(report(store, capsys, "--sweep", "dams-o", "--format", "csv")))
    expected = sorted(sweep.trials, key=lambda trial: -_last(trial, "val_roc_auc"))
    assert list(trials["trial_id"]) == [trial.trial_id for trial in expected]
    assert list(trials["status"]) == [trial.status for trial in expected]
    assert list(trials["epochs"]) == [len(trial.history["val_roc_auc"]) for trial in expected]
    assert list(trials["val_roc_auc"]) == [_last(trial, "val_roc_auc") for trial in expected]
    assert list(trials["train.lr"]) == [trial.params["train.lr"] for trial in expected]
    assert "margin.initial_margin" in trials
    assert "train.epochs" not in trials and "margin.scheduler" not in trials


def test_min_mode_sweep_sorts_ascending_and_sort_picks_any_metric(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    by_id = {sweep.sweep_id: sweep for sweep in SWEEPS}
    eer = pd.read_csv(io.StringIO(report(store, capsys, "--sweep", "lin", "--format", "csv")))
    assert list(eer["val_eer"]) == sorted(_last(t, "val_eer") for t in by_id["lin-eer"].trials)
    # --sort keeps the sweep's direction, min here.
    auc = report(store, capsys, "--sweep", "lin", "--sort", "val_roc_auc", "--format", "csv")
    values = list(pd.read_csv(io.StringIO(auc))["val_roc_auc"])
    assert values == sorted(_last(t, "val_roc_auc") for t in by_id["lin-eer"].trials)
    margin = report(store, capsys, "--sweep", "dams-one", "--sort", "margin", "--format", "csv")
    values = list(pd.read_csv(io.StringIO(margin))["margin"])
    assert values == sorted((_last(t, "margin") for t in by_id["dams-one"].trials), reverse=True)


def test_sweep_found_by_run_id_and_its_prefix(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    for key in (store["const-1"], store["const-1"][:10]):
        text = report(store, capsys, "--sweep", key, "--format", "csv")
        assert sorted(pd.read_csv(io.StringIO(text))["trial_id"]) == ["c1", "c2"]


def test_comparison_shows_final_table_per_method_and_its_sweeps(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = report(store, capsys, "--sweep", COMPARISON_ID, "--format", "csv")
    final, sweeps = csv_tables(text).values()
    final = final.set_index("method")
    assert list(final.index) == METHODS
    for method in METHODS:
        runs = [f for f in FINALS if f[0] == method]
        done = [roc_auc for _, _, status, roc_auc in runs if status in MEASURED]
        assert final.loc[method, "runs"] == len(runs)
        assert final.loc[method, "collapsed"] == sum(f[2] == "collapsed" for f in runs)
        assert final.loc[method, "failed"] == sum(f[2] == "failed" for f in runs)
        assert final.loc[method, "roc_auc_n"] == len(done)
        assert final.loc[method, "roc_auc_mean"] == pytest.approx(np.mean(done))
        assert final.loc[method, "eer_mean"] == pytest.approx(np.mean(done) - 0.1)
    assert list(sweeps["sweep_id"]) == ["cmp-dams"]
    assert sweeps.loc[0, "best"] == pytest.approx(0.96)
    assert sweeps.loc[0, "best_trial_id"] == "n2"


def test_comparison_sorts_by_any_recall_at_k_its_final_runs_logged(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--sweep", COMPARISON_ID, "--sort", "recall_at_4_mean", "--format", "csv")
    final = next(iter(csv_tables(report(store, capsys, *args)).values()))
    assert list(final["recall_at_4_mean"]) == sorted(final["recall_at_4_mean"], reverse=True)
    dams = [roc_auc - 0.5 for method, _, _, roc_auc in FINALS if method == "dams"]
    assert final.set_index("method").loc["dams", "recall_at_4_mean"] == pytest.approx(np.mean(dams))


def test_comparison_flag_shows_what_sweep_shows_for_a_comparison(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    by_sweep = report(store, capsys, "--sweep", COMPARISON_ID, "--format", "csv")
    assert report(store, capsys, "--comparison", COMPARISON_ID, "--format", "csv") == by_sweep


def test_table_and_markdown_formats(
    store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    table = report(store, capsys, "--sweep", "dams-one")
    lines = table.splitlines()
    assert lines[0].startswith("sweep dams (dams-one")
    assert lines[1].split()[:4] == ["trial_id", "run_name", "status", "epochs"]
    assert len(lines) == 2 + len(SWEEPS[0].trials)
    markdown = report(store, capsys, "--sweep", "dams-one", "--format", "markdown").splitlines()
    assert markdown[0].startswith("## sweep dams")
    header, rule, *rows = markdown[2:]
    assert header.startswith("| trial_id | run_name | status | epochs |")
    assert set(rule) <= set("|-: ") and rule.count("|") == header.count("|")
    assert len(rows) == len(SWEEPS[0].trials)
    top = max(SWEEPS[0].trials, key=lambda trial: _last(trial, "val_roc_auc"))
    assert rows[0].startswith(f"| {top.trial_id} | dams μ0={top.params['margin.initial_margin']} |")
    overview = report(store, capsys, "--format", "markdown")
    assert "## best tuning trial per method" in overview


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--experiment", "nope"],
            f"--experiment: no experiment 'nope'; existing: Default, {EXPERIMENT}",
        ),
        (["--sweep", "zzz"], "--sweep: no sweep or comparison 'zzz'"),
        (["--sweep", "cmp"], "--sweep: 'cmp' is ambiguous; it matches"),
        (["--sweep", "dams-one", "--sort", "bogus"], "available: margin, val_roc_auc"),
        (
            ["--sweep", COMPARISON_ID, "--sort", "recall_at_16_mean"],
            "recall_at_1_mean, recall_at_4_mean, map_at_r_mean",
        ),
        (["--sort", "val_roc_auc"], "--sort: the sweeps here disagree on max/min"),
        (["--html", "page.html"], "--html: needs --comparison ID"),
        (["--comparison", "dams-one"], "--comparison: 'dams-one' is a sweep (dams), not a"),
        (["--comparison", "zzz"], "--comparison: no sweep or comparison 'zzz'"),
        (["--comparison", COMPARISON_ID, "--sweep", "dams-one"], "not both"),
        (["--comparison", COMPARISON_ID, "--html", "page.txt"], "written as .html"),
        (
            ["--comparison", COMPARISON_ID, "--html", "page.html"],
            "has no table.csv, comparisons.csv, tuning.csv among its artifacts",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    store: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    full = ["report", "--tracking-uri", store["uri"], "--experiment", EXPERIMENT, *args]
    assert main(full) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err


def test_missing_sqlite_file_is_refused_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    assert main(["report", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and f"no MLflow database at {missing}" in captured.err
    assert not missing.exists()
