"""The comparison protocol a metric-learning reviewer checks: who wins a sweep, which seeds are
re-trained, what is averaged, what the uncertainty covers and how the tests are corrected."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import ray
import yaml
from mlflow import MlflowClient
from tiny import lr_space

from margin_tune.pipeline.analysis.statistics import holm_bonferroni
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.jobs.compare.run import paired_table, split_dir, summary_table
from margin_tune.pipeline.jobs.compare.spec import PRESETS, parse_compare_spec, retraining_seeds
from margin_tune.pipeline.search.budget_search import BudgetOptunaSearch
from margin_tune.pipeline.search.searchers import SearcherRequest, build_searcher, startup_trials
from margin_tune.pipeline.sweep.grid_trials import completed_metrics
from margin_tune.pipeline.sweep.session import ray_session
from margin_tune.pipeline.sweep.tuner import best_trial
from margin_tune.pipeline.tracking.vocabulary import (
    BEST_EPOCHS_TAG,
    KIND_TAG,
    STAGE_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import EVALUATION_METRICS
from margin_tune.trainables.parts import load_config

# --- 1. winners are chosen among trials that trained the whole budget --------------------------


def trials_frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[TRIAL_ID_TAG, "status", "epochs", "val_map_at_r"])


def test_an_early_stopped_trial_never_wins_even_with_a_better_value() -> None:
    table = trials_frame(
        [
            ("stopped", "early_stopped", 2, 0.99),
            ("collapsed", "collapsed", 3, 0.98),
            ("failed", "failed", 1, 0.97),
            ("full", "completed", 8, 0.50),
            ("full-better", "completed", 8, 0.60),
        ]
    )
    assert best_trial(table, "val_map_at_r", "max")[TRIAL_ID_TAG] == "full-better"
    assert best_trial(table, "val_map_at_r", "min")[TRIAL_ID_TAG] == "full"


def test_a_sweep_without_a_completed_trial_has_no_winner() -> None:
    table = trials_frame([("stopped", "early_stopped", 2, 0.99), ("failed", "failed", 1, 0.5)])
    assert best_trial(table, "val_map_at_r", "max") == {}
    assert best_trial(trials_frame([]), "val_map_at_r", "max") == {}


@pytest.mark.parametrize("searcher", ["tpe", "random", "qmc"])
def test_optuna_is_told_pruned_for_a_trial_short_of_its_budget(
    searcher: str, tiny_config: Config
) -> None:
    """Ray's OptunaSearch tells COMPLETE with a truncated value; ours tells PRUNED (and FAIL
    for an error, even after results), and COMPLETE only at the full budget."""
    request = SearcherRequest(
        space=lr_space(tiny_config), seed=0, study_name="s", epochs=4, trials=3
    )
    search = build_searcher(searcher, request)
    assert isinstance(search, BudgetOptunaSearch)
    search.set_search_properties(None, None, {})
    for trial_id, ran, error in (("short", 2, False), ("full", 4, False), ("broken", 3, True)):
        assert search.suggest(trial_id) is not None
        for epoch in range(1, ran + 1):
            search.on_trial_result(
                trial_id, {"epoch": epoch, "training_iteration": epoch, "val_map_at_r": 0.1}
            )
        last = {"epoch": ran, "training_iteration": ran, "val_map_at_r": 0.9}
        search.on_trial_complete(trial_id, last, error=error)
    states = [trial.state for trial in search._ot_study.trials]  # type: ignore[union-attr]
    assert states == [
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
    ]
    assert search._ot_study.trials[1].value == 0.9  # type: ignore[union-attr]


@pytest.mark.parametrize(("trials", "expected"), [(1, 2), (4, 2), (16, 4), (40, 10), (50, 10)])
def test_tpe_random_start_up_scales_with_the_budget(trials: int, expected: int) -> None:
    assert startup_trials(trials) == expected


def test_tpe_is_built_with_the_scaled_start_up(tiny_config: Config) -> None:
    request = SearcherRequest(space=lr_space(tiny_config), seed=0, study_name="s", trials=16)
    search = build_searcher("tpe", request)
    assert search._sampler._n_startup_trials == 4  # type: ignore[attr-defined]


# --- 2. re-training seeds are never the tuning seed ---------------------------------------------


@pytest.mark.parametrize(
    ("count", "tuning", "expected"),
    [(3, [0], (1, 2, 3)), (2, [5], (0, 1)), (3, [1, 2], (0, 3, 4)), (1, [], (0,))],
)
def test_retraining_seeds_are_disjoint_from_the_tuning_seeds(
    count: int, tuning: list[int], expected: tuple[int, ...]
) -> None:
    seeds = retraining_seeds(count, tuning)
    assert seeds == expected
    assert not set(seeds) & set(tuning)


def spec_data(**extra: object) -> dict[str, object]:
    return {
        "set": ["dataset.num_classes=30", "dataset.samples_per_class=16"],
        "methods": {"dams": "dams", "constant": "constant"},
        **extra,
    }


def test_a_spec_records_tuning_retraining_and_split_seeds() -> None:
    spec = parse_compare_spec(
        spec_data(seeds=4, split_seed=7, splits=3, set=["seed=2"]), [], relative_to=Path.cwd()
    )
    assert spec.tuning_seeds == (2,)
    assert spec.final_seeds == (0, 1, 3, 4)
    assert spec.split_seeds == (7, 8, 9)


# --- 3. collapsed runs are outcomes; failed ones have no metric ---------------------------------


def test_a_collapsed_run_carries_its_metrics_and_a_failed_one_none() -> None:
    last = {"test_map_at_r": 0.1, "val_map_at_r": 0.2}
    assert completed_metrics("collapsed", last, ["test_map_at_r"]) == {"test_map_at_r": 0.1}
    assert np.isnan(completed_metrics("failed", last, ["test_map_at_r"])["test_map_at_r"])
    assert np.isnan(completed_metrics("early_stopped", last, ["test_map_at_r"])["test_map_at_r"])


def runs_frame(values: dict[tuple[int, str, int], tuple[str, float]]) -> pd.DataFrame:
    rows = []
    for (split, method, seed), (status, value) in values.items():
        rows.append(
            {
                "split": split,
                "method": method,
                "seed": seed,
                "status": status,
                **{f"test_{name}": value for name in EVALUATION_METRICS},
            }
        )
    return pd.DataFrame(rows)


def test_collapsed_runs_are_averaged_in_and_failed_ones_reduce_n() -> None:
    runs = runs_frame(
        {
            (0, "dams", 1): ("completed", 0.5),
            (0, "dams", 2): ("collapsed", 0.1),
            (0, "dams", 3): ("failed", np.nan),
            (0, "constant", 1): ("completed", 0.4),
            (0, "constant", 2): ("completed", 0.4),
            (0, "constant", 3): ("completed", 0.5),
        }
    )
    table = summary_table(runs, ["dams", "constant"]).set_index("method")
    assert table.loc["dams", "map_at_r_mean"] == pytest.approx(0.3)
    assert table.loc["dams", "map_at_r_n"] == 2
    assert (table.loc["dams", "collapsed"], table.loc["dams", "failed"]) == (1, 1)
    pairs = paired_table(runs, ["dams"], ("constant",), primary="map_at_r")
    primary = pairs[pairs["metric"] == "map_at_r"].iloc[0]
    assert primary["pairs"] == 2  # the failed seed's pair is incomplete
    assert primary["mean_difference"] == pytest.approx(((0.5 - 0.4) + (0.1 - 0.4)) / 2)


# --- 4. repeated class splits are the unit of replication ---------------------------------------


def test_with_several_splits_seeds_are_averaged_within_a_split_and_splits_are_the_unit() -> None:
    values = {}
    for split, (dams, constant) in enumerate([(0.50, 0.40), (0.70, 0.50), (0.60, 0.55)]):
        for seed, noise in ((1, -0.02), (2, 0.02)):
            values[split, "dams", seed] = ("completed", dams + noise)
            values[split, "constant", seed] = ("completed", constant + 2 * noise)
    runs = runs_frame(values)
    table = summary_table(runs, ["dams", "constant"], splits=3).set_index("method")
    assert table.loc["dams", "map_at_r_n"] == 3
    assert table.loc["dams", "unit"] == "split"
    assert table.loc["dams", "map_at_r_mean"] == pytest.approx(0.6)
    spread = np.std([0.5, 0.7, 0.6], ddof=1) / np.sqrt(3) * 4.302652729911275
    assert table.loc["dams", "map_at_r_ci95"] == pytest.approx(spread)
    pairs = paired_table(runs, ["dams"], ("constant",), primary="map_at_r", splits=3)
    assert set(pairs["unit"]) == {"split"} and set(pairs["pairs"]) == {3}
    one_split = summary_table(runs[runs["split"] == 0], ["dams"], splits=1)
    assert one_split["unit"].tolist() == ["seed"] and one_split["map_at_r_n"].tolist() == [2]


def test_the_paper_preset_repeats_over_splits_and_quick_does_not() -> None:
    assert PRESETS["paper"]["splits"] >= 3
    assert PRESETS["quick"]["splits"] == 1


# --- 5. one primary metric, Holm-corrected over every scheduler × baseline ---------------------


def test_a_space_tuning_another_metric_than_the_declared_one_is_refused(tmp_path: Path) -> None:
    space = tmp_path / "roc.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "metric": "val_roc_auc",
                "parameters": {
                    "margin.scheduler": {"distribution": "fixed", "value": "constant"},
                    "train.lr": {"distribution": "uniform", "low": 1e-4, "high": 1e-2},
                },
            }
        )
    )
    data = spec_data(methods={"dams": "dams", "roc": "roc.yaml"})
    with pytest.raises(ConfigError, match=r"compare\.methods\.roc.*val_map_at_r"):
        parse_compare_spec(data, [], relative_to=tmp_path)
    assert (
        parse_compare_spec(
            {**data, "metric": "val_map_at_r"}
            | {"methods": {"dams": "dams", "constant": "constant"}},
            [],
            relative_to=tmp_path,
        ).primary
        == "map_at_r"
    )
    with pytest.raises(ConfigError, match=r"compare\.metric.*allowed"):
        parse_compare_spec(spec_data(metric="test_map_at_r"), [], relative_to=tmp_path)


def test_holm_adjusts_the_primary_metric_over_every_scheduler_and_baseline() -> None:
    rng = np.random.default_rng(0)
    values = {}
    for seed in range(1, 7):
        for method, shift in (("a", 0.02), ("b", 0.05), ("constant", 0.0), ("linear", 0.01)):
            values[0, method, seed] = ("completed", 0.5 + shift + rng.normal(0, 0.02))
    runs = runs_frame(values)
    pairs = paired_table(runs, ["a", "b"], ("constant", "linear"), primary="map_at_r")
    primary = pairs[pairs["role"] == "primary"]
    assert len(primary) == 4 and set(primary["metric"]) == {"map_at_r"}
    assert primary["holm_p"].to_numpy() == pytest.approx(
        holm_bonferroni(primary["t_test_p"].to_numpy())
    )
    secondary = pairs[pairs["role"] == "secondary"]
    assert len(secondary) == 4 * (len(EVALUATION_METRICS) - 1) and secondary["holm_p"].isna().all()
    assert list(pairs["role"][:4]) == ["primary"] * 4


# --- 10. a constant paired difference has no p-value -------------------------------------------


def test_a_constant_paired_difference_is_reported_as_constant_not_as_p_zero() -> None:
    values = {}
    for seed, base in enumerate([0.3, 0.5, 0.7], start=1):
        values[0, "dams", seed] = ("completed", base + 0.125)
        values[0, "constant", seed] = ("completed", base)
    pairs = paired_table(runs_frame(values), ["dams"], ("constant",), primary="map_at_r")
    row = pairs[pairs["metric"] == "map_at_r"].iloc[0]
    assert bool(row["constant"]) and np.isnan(row["t_test_p"]) and np.isnan(row["holm_p"])
    assert row["mean_difference"] == pytest.approx(0.125) and np.isnan(row["ci95"])


# --- the whole protocol, end to end ------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    with ray_session(None, num_cpus=2):
        yield
    assert not ray.is_initialized()


EPOCHS = 4
SPACE = {
    "metric": "val_map_at_r",
    "parameters": {
        "margin.scheduler": {"distribution": "fixed", "value": "constant"},
        # lr 1e-7 barely moves the network, 3e-3 trains it: ASHA has trials to stop.
        "train.lr": {"distribution": "categorical", "choices": [0.003, 1.0e-7]},
        "margin.initial_margin": {"distribution": "uniform", "low": 0.1, "high": 0.3},
    },
}


@pytest.mark.slow
def test_compare_selects_full_budget_winners_and_retrains_them_on_unseen_seeds(
    local_ray: None, tmp_path: Path, tiny_overrides: list[str]
) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp_path / "b.yaml").write_text(
        yaml.safe_dump(
            {
                **SPACE,
                "parameters": {
                    **SPACE["parameters"],
                    "margin.scheduler": {"distribution": "fixed", "value": "dams"},
                },
            }
        )
    )
    spec = tmp_path / "compare.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "methods": {"dams": "b.yaml", "constant": "a.yaml"},
                "budget": {"trials": 4, "epochs": EPOCHS},
                "searcher": "random",
                "seeds": 2,
                "set": [*tiny_overrides, "collapse.enabled=false"],
            }
        )
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = tmp_path / "cmp"
    code = main(
        [
            *("compare", "--config", str(spec), "--tracking-uri", uri, "--out", str(out)),
            *("--experiment", "protocol", "--grace-period", "1", "--concurrency", "1"),
            *("--storage", storage, "--seed", "3"),
        ]
    )
    assert code == 0
    tuning = pd.read_csv(out / "tuning.csv")
    stopped = 0
    for method in ("dams", "constant"):
        trials = pd.read_csv(split_dir(out, 0) / "sweeps" / method / "trials.csv")
        stopped += int((trials["status"] == "early_stopped").sum())
        chosen = tuning.set_index("method").loc[method]
        winner = trials.set_index(TRIAL_ID_TAG).loc[chosen["chosen_trial"]]
        assert winner["status"] == "completed" and winner["epochs"] == EPOCHS
        assert chosen["chosen_epochs"] == EPOCHS
        assert chosen["tuning_score"] == pytest.approx(winner["val_map_at_r"])
        assert chosen["trials"] == 4 and chosen["trial_epochs"] == trials["epochs"].sum()
        assert chosen["searcher"] == "random" and chosen["dimensions"] == 2
    assert stopped > 0, "ASHA stopped no trial: the test would not test selection"
    # Optuna learned stopped trials as PRUNED, at the epoch they stopped, and finished ones as
    # COMPLETE.
    names = optuna.get_all_study_names(storage)
    assert len(names) == 2
    for name in names:
        method = name.split("-")[2]
        trials = pd.read_csv(split_dir(out, 0) / "sweeps" / method / "trials.csv")
        study = optuna.load_study(study_name=name, storage=storage)
        states = [trial.state.name for trial in study.trials]
        assert states.count("COMPLETE") == (trials["status"] == "completed").sum()
        assert states.count("PRUNED") == (trials["status"] == "early_stopped").sum()
        for trial in study.trials:
            if trial.state == optuna.trial.TrialState.PRUNED:
                assert trial.value is not None and max(trial.intermediate_values) < EPOCHS

    manifest = json.loads((out / "margin-tune.json").read_text())
    assert manifest["tuning_seeds"] == [0] and manifest["retraining_seeds"] == [1, 2]
    assert manifest["split_seeds"] == [0]
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(set(runs["seed"])) == [1, 2]
    text = (out / "table.md").read_text()
    assert "re-trained with seeds 1, 2 (disjoint from the tuning seed 0)" in text
    assert "conditional on this split and this tuning outcome" in text
    table = pd.read_csv(out / "table.csv").set_index("method")
    assert {"tuning_score", "retrained_val", "trials", "trial_epochs", "searcher"} <= set(table)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("protocol").experiment_id
    every = client.search_runs([experiment], max_results=1000)
    (comparison,) = [r for r in every if r.data.tags.get(KIND_TAG) == "comparison"]
    assert comparison.data.params["retraining_seeds"] == "1,2"
    assert comparison.data.params["tuning_seeds"] == "0"
    sweeps = [r for r in every if r.data.tags.get(KIND_TAG) == "sweep"]
    for sweep in sweeps:
        assert int(sweep.data.tags[BEST_EPOCHS_TAG]) == EPOCHS

    def history(run_id: str) -> list[float]:
        points = client.get_metric_history(run_id, "val_map_at_r")
        return [m.value for m in sorted(points, key=lambda m: m.step)]

    finals = [r for r in every if r.data.tags.get(STAGE_TAG) == "final"]
    tuning_runs = [r for r in every if STATUS_TAG in r.data.tags and r not in finals]
    assert len(finals) == 4 and len(tuning_runs) == 8
    tuning_histories = [history(r.info.run_id) for r in tuning_runs]
    for final in finals:
        mine = history(final.info.run_id)
        assert len(mine) == EPOCHS
        for other in tuning_histories:
            assert mine[: len(other)] != other[: len(mine)], "a re-training repeats a tuning run"


# --- 6. the packaged spaces, grids and presets optimise MAP@R ----------------------------------


def test_every_packaged_space_grid_and_the_default_comparison_tune_map_at_r() -> None:
    from margin_tune.search_spaces import packaged_spaces

    for name, path in packaged_spaces().items():
        assert yaml.safe_load(path.read_text())["metric"] == "val_map_at_r", name
    grids = Path(__file__).parents[3] / "search_spaces" / "grids"
    for path in grids.glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["metric"] == "val_map_at_r", path.name
    spec = parse_compare_spec({"set": ["dataset.num_classes=30"]}, [], relative_to=Path.cwd())
    assert spec.metric == "val_map_at_r" and spec.primary == "map_at_r"


# --- 9. an ablation ranks its cells on validation, never on test --------------------------------


def test_an_ablation_grid_refuses_to_rank_by_a_test_metric_and_defaults_to_validation() -> None:
    from margin_tune.pipeline.jobs.ablate.grid import parse_grid

    base = load_config(overrides=["dataset.num_classes=30"])
    factors = {"miner.name": ["all", "semihard"]}
    with pytest.raises(ConfigError, match=r"grid\.metric.*test metric"):
        parse_grid({"metric": "test_roc_auc", "factors": factors}, base, name="g")
    assert parse_grid({"factors": factors}, base, name="g").metric == "val_map_at_r"
