"""``tune --objectives``: the flag's form, what it refuses, the Pareto front, and Optuna's
multi-objective study behind Ray's ``OptunaSearch`` (real libraries, no sweep: the end-to-end
test runs one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from tiny import TINY, lr_space

from margin_tune.pipeline.analysis.pareto import pareto_front, pareto_mask
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.search.budget_search import BudgetOptunaSearch
from margin_tune.pipeline.search.objectives import (
    Objective,
    check_reported,
    parse_objectives,
    reported_metrics,
)
from margin_tune.pipeline.search.searchers import SearcherRequest, build_searcher
from margin_tune.pipeline.sweep.plan import SweepOptions
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import load_config

TWO = "val_map_at_r:max,epoch_seconds:min"
WARM_AND_TWO = ("tune", "--space", "dams", "--trials", "2", "--no-early-stopping", "--objectives")
WARM_AND_TWO += (TWO, "--warm-start", "s1")


def test_objectives_are_read_in_one_spelling() -> None:
    assert parse_objectives(" val_map_at_r:max , epoch_seconds:min") == (
        Objective("val_map_at_r", "max"),
        Objective("epoch_seconds", "min"),
    )
    options = SweepOptions(
        trials=2, early_stopping=False, objectives="val_eer:min, val_map_at_r:max"
    )
    assert options.objectives == "val_eer:min,val_map_at_r:max"
    assert [o.metric for o in options.objective_list] == ["val_eer", "val_map_at_r"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("val_map_at_r:max", "is one objective; give two or more"),
        ("val_map_at_r:max,val_map_at_r:min", "val_map_at_r given twice"),
        ("val_map_at_r,epoch_seconds:min", "say which way, val_map_at_r:max or val_map_at_r:min"),
        ("val_map_at_r:up,epoch_seconds:min", "unknown direction 'up'; allowed: max, min"),
        ("val_map_at_r:max,,epoch_seconds:min", "empty objective"),
    ],
)
def test_a_malformed_objective_list_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_objectives(text)
    assert raised.value.field == "--objectives"


def test_only_reported_metrics_can_be_objectives() -> None:
    reported = reported_metrics((1, 4))
    assert {"val_map_at_r", "val_recall_at_4", "epoch_seconds", "margin"} <= set(reported)
    assert "epoch" not in reported and "collapsed" not in reported
    with pytest.raises(ConfigError, match="unknown metric 'val_speed'; a trial reports: margin"):
        check_reported(parse_objectives("val_map_at_r:max,val_speed:min"), reported)


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({}, "--objectives", "ASHA stops trials by one metric"),
        ({"early_stopping": False, "searcher": "coordinate"}, "--searcher", "optimises one"),
    ],
)
def test_early_stopping_and_a_one_metric_searcher_are_refused(
    options: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        SweepOptions(trials=2, objectives=TWO, **options)  # type: ignore[arg-type]
    assert raised.value.field == field


def test_the_front_holds_exactly_the_undominated_completed_trials() -> None:
    trials = pd.DataFrame(
        {
            "trial_id": list("abcdefg"),
            "status": ["completed"] * 5 + ["early_stopped", "completed"],
            # maximise q, minimise s
            "q": [0.9, 0.8, 0.8, 0.7, 0.9, 0.99, np.nan],
            "s": [3.0, 1.0, 2.0, 1.0, 3.0, 0.1, 1.0],
        }
    )
    objectives = [Objective("q", "max"), Objective("s", "min")]
    front = pareto_front(trials, objectives)
    # a and e tie (both kept); b beats c and d; f stopped early, g has no q.
    assert list(front["trial_id"]) == ["a", "e", "b"]


@pytest.mark.parametrize("seed", range(10))
def test_no_front_trial_is_dominated_and_every_other_is(seed: int) -> None:
    values = np.random.default_rng(seed).normal(size=(40, 3)).round(1)  # ties happen
    maximise = [True, False, True]
    mask = pareto_mask(values, maximise)
    signed = np.where(maximise, values, -values)

    def dominated_by(row: np.ndarray, others: np.ndarray) -> bool:
        return bool(((others >= row).all(axis=1) & (others > row).any(axis=1)).any())

    for index in range(len(values)):
        assert dominated_by(signed[index], signed) != mask[index]
        if not mask[index]:
            assert dominated_by(signed[index], signed[mask])


@pytest.mark.parametrize("searcher", ["tpe", "nsga2"])
def test_a_multi_objective_study_is_told_every_objective_or_pruned(searcher: str) -> None:
    base = load_config(overrides=list(TINY))
    request = SearcherRequest(
        space=lr_space(base),
        seed=0,
        study_name="study",
        epochs=3,
        trials=4,
        objectives=parse_objectives(TWO),
    )
    search = build_searcher(searcher, request)
    assert isinstance(search, BudgetOptunaSearch)
    search.set_search_properties(None, None, {})
    assert search._ot_study is not None
    assert search._ot_study.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    for trial_id, epochs in (("full", 3), ("short", 1)):
        assert search.suggest(trial_id) is not None
        for epoch in range(1, epochs + 1):
            result = {"epoch": epoch, "training_iteration": epoch}
            search.on_trial_result(trial_id, {**result, "val_map_at_r": 0.5, "epoch_seconds": 2})
        result = {"epoch": epochs, "training_iteration": epochs}
        search.on_trial_complete(trial_id, {**result, "val_map_at_r": 0.6, "epoch_seconds": 1.5})
    full, short = search._ot_study.trials
    assert full.state == optuna.trial.TrialState.COMPLETE and full.values == [0.6, 1.5]
    assert short.state == optuna.trial.TrialState.PRUNED


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["compare", "--preset", "quick", "--objectives", TWO], "compare ranks its methods"),
        (["tune", "--space", "dams", "--trials", "2", "--objectives", TWO], "add --no-early"),
        (
            [*WARM_AND_TWO],
            "--warm-start: seeds the study with one metric's values",
        ),
    ],
)
def test_where_several_objectives_do_not_belong_the_command_exits_2(
    command: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main([*command, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
