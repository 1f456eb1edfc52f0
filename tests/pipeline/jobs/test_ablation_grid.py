"""Ablation grids: the cells a file describes, what it refuses, and the tables of a result.

The cell count and the main effects are checked against computations written independently of
the code under test (explicit loops over the design).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from margin_tune.pipeline.jobs.ablate.grid import (
    DEFAULT_SEEDS,
    AblationGrid,
    load_grid,
    packaged_grids,
    parse_grid,
)
from margin_tune.pipeline.jobs.ablate.run import (
    cell_configs,
    cell_table,
    main_effects,
    summary_columns,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.schedulers import SCHEDULERS

NESTED = {
    "metric": "val_roc_auc",
    "factors": {
        "margin.scheduler": {
            "dams": {
                "margin.target_easy_ratio": [0.9, 0.95],
                "margin.step_size": [0.02, 0.05, 0.1],
            },
            "linear": {"margin.rate": [0.01, 0.02]},
            "constant": {},
        },
        "miner.name": ["all", "semihard"],
        "train.lr": [0.001, 0.003],
    },
}


def nested_grid(**changes: object) -> AblationGrid:
    return parse_grid({**NESTED, **changes}, Config(), name="nested")


def test_nested_factors_cross_only_within_their_level() -> None:
    grid = nested_grid()
    expected = [
        {"margin.scheduler": "dams", "margin.target_easy_ratio": t, "margin.step_size": s}
        for t, s in itertools.product([0.9, 0.95], [0.02, 0.05, 0.1])
    ]
    expected += [{"margin.scheduler": "linear", "margin.rate": r} for r in (0.01, 0.02)]
    expected += [{"margin.scheduler": "constant"}]
    expected = [
        {**point, "miner.name": miner, "train.lr": lr}
        for point in expected
        for miner in ("all", "semihard")
        for lr in (0.001, 0.003)
    ]
    assert sorted(map(repr, (dict(cell.values) for cell in grid.cells))) == sorted(
        map(repr, expected)
    )
    assert len(grid.cells) == (6 + 2 + 1) * 2 * 2
    assert len({cell.label for cell in grid.cells}) == len(grid.cells)
    assert grid.factor_paths == [
        "margin.scheduler",
        "margin.target_easy_ratio",
        "margin.step_size",
        "margin.rate",
        "miner.name",
        "train.lr",
    ]
    assert grid.seeds == DEFAULT_SEEDS
    assert grid.mode == "max"


def test_cell_configs_apply_each_cells_values() -> None:
    grid = nested_grid()
    configs = cell_configs(grid)
    for cell in grid.cells:
        config = configs[cell.label]
        for path, value in cell.values.items():
            section, name = path.split(".")
            assert config[section][name] == value


@pytest.mark.parametrize("name", sorted(packaged_grids()))
def test_packaged_grids_vary_scheduler_parameters_only_under_their_scheduler(name: str) -> None:
    grid = load_grid(name, Config())
    configs = cell_configs(grid)
    assert len({repr(config) for config in configs.values()}) == len(grid.cells)
    for cell in grid.cells:
        scheduler = configs[cell.label]["margin"]["scheduler"]
        for path in cell.values:
            section, parameter = path.split(".")
            if section == "margin" and parameter != "scheduler":
                assert parameter in SCHEDULERS.get(scheduler).parameters, (cell.label, path)


def test_seeds_flag_overrides_the_file_and_eer_defaults_to_min() -> None:
    grid = parse_grid(
        {"metric": "val_eer", "seeds": 5, "factors": {"miner.name": ["all"]}},
        Config(),
        name="g",
        seeds=2,
    )
    assert (grid.seeds, grid.mode) == (2, "min")


@pytest.mark.parametrize(
    ("data", "field", "phrase"),
    [
        ({"factors": {"miner.name": ["all"]}, "trials": 3}, "grid.trials", "allowed:"),
        ({"factors": {"miner.nme": ["all"]}}, "grid.factors.miner.nme", "known:"),
        ({"factors": {}}, "grid.factors", "non-empty"),
        ({"factors": {"miner.name": "all"}}, "grid.factors.miner.name", "list of levels"),
        ({"factors": {"miner.name": []}}, "grid.factors.miner.name", "at least one level"),
        ({"factors": {"miner.name": ["all", "all"]}}, "grid.factors.miner.name", "twice"),
        (
            {"factors": {"margin.scheduler": ["dams", "constant"], "margin.step_size": [0.1]}},
            "grid.factors.margin.step_size",
            "nest it under",
        ),
        (
            {"factors": {"margin.scheduler": {"linear": {"margin.step_size": [0.1, 0.2]}}}},
            "grid.factors.margin.step_size",
            "dams, two_sided only",
        ),
        (
            {"factors": {"margin.scheduler": {"dams": {"margin.scheduler": ["linear"]}}}},
            "grid.factors.margin.scheduler.dams.margin.scheduler",
            "enclosing factor",
        ),
        ({"factors": {"margin.target_easy_ratio": [0.9, 1.3]}}, "grid.factors", "1.3"),
        ({"factors": {"margin.scheduler": ["cosine"]}}, "grid.factors", "cosine"),
        ({"factors": {"train.epochs": [2, 2.0]}}, "grid.factors", "must be an integer"),
        ({"factors": {"miner.name": ["all"]}, "metric": "roc"}, "grid.metric", "val_map_at_r"),
        (
            {"factors": {"miner.name": ["all"]}, "metric": "test_roc_auc"},
            "grid.metric",
            "test metric",
        ),
        ({"factors": {"miner.name": ["all"]}, "mode": "up"}, "grid.mode", "max, min"),
        ({"factors": {"miner.name": ["all"]}, "seeds": 0}, "grid.seeds", ">= 1"),
        ({"factors": {"miner.name": ["all"]}, "seeds": True}, "grid.seeds", ">= 1"),
        (["miner.name"], "grid", "mapping"),
    ],
)
def test_bad_grids_name_the_field(data: object, field: str, phrase: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_grid(data, Config(), name="bad")
    assert caught.value.field == field
    assert phrase in str(caught.value)


def test_unknown_grid_name_lists_the_packaged_ones() -> None:
    with pytest.raises(ConfigError, match=r"packaged: .*schedulers") as caught:
        load_grid("nope", Config())
    assert caught.value.field == "--grid"


def _runs(grid: AblationGrid, seeds: int, value: object) -> pd.DataFrame:
    """A result table with a known metric per (cell, seed), in the columns the tables read."""
    rows = []
    for index, cell in enumerate(grid.cells):
        for seed in range(seeds):
            metric = value(index, seed)  # type: ignore[operator]
            rows.append(
                {
                    "cell": cell.label,
                    "seed": seed,
                    "status": "failed" if math.isnan(metric) else "completed",
                    **cell.values,
                    "val_roc_auc": metric,
                }
            )
    frame = pd.DataFrame(rows)
    for name in ("test_roc_auc", "test_eer", "test_tar_at_far_1e-3", "test_recall_at_1"):
        frame[name] = 0.5
    for name in ("test_map_at_r",):
        frame[name] = 0.5
    return frame


def _value(index: int, seed: int) -> float:
    """Distinct, irregular values; one cell failed at seed 1."""
    if (index, seed) == (3, 1):
        return float("nan")
    return 0.9 + 0.001 * ((index * 7 + seed * 13) % 17) + 0.0001 * index * seed


def test_main_effects_match_loops_over_the_design() -> None:
    grid = nested_grid()
    seeds = 4
    runs = _runs(grid, seeds, _value)
    effects = main_effects(runs, grid)
    by_label = {cell.label: index for index, cell in enumerate(grid.cells)}
    for path in grid.factor_paths:
        levels: dict[str, list[int]] = {}
        for cell in grid.cells:
            if path in cell.values:
                levels.setdefault(str(cell.values[path]), []).append(by_label[cell.label])
        means = {}
        for level, indices in levels.items():
            per_seed = []
            for seed in range(seeds):
                values = [_value(i, seed) for i in indices if not math.isnan(_value(i, seed))]
                per_seed.append(sum(values) / len(values))
            mean = sum(per_seed) / seeds
            half = stats.t.ppf(0.975, seeds - 1) * np.std(per_seed, ddof=1) / math.sqrt(seeds)
            row = effects[(effects["factor"] == path) & (effects["level"] == level)].iloc[0]
            assert row["cells"] == len(indices)
            assert row["seeds"] == seeds
            assert row["mean"] == pytest.approx(mean, abs=1e-12)
            assert row["ci95"] == pytest.approx(half, rel=1e-9)
            means[level] = mean
        grand = sum(means.values()) / len(means)
        for level, mean in means.items():
            row = effects[(effects["factor"] == path) & (effects["level"] == level)].iloc[0]
            assert row["effect"] == pytest.approx(mean - grand, abs=1e-12)
    assert set(effects["factor"]) == set(grid.factor_paths)


def test_cell_table_counts_failed_runs_and_ranks_by_mode() -> None:
    grid = nested_grid()
    runs = _runs(grid, 3, _value)
    table = cell_table(runs, grid)
    assert list(table["cell"]) == [cell.label for cell in grid.cells]
    failed = table.iloc[3]
    assert (failed["runs"], failed["failed"], failed["val_roc_auc_n"]) == (3, 1, 2)
    for index, row in table.iterrows():
        values = [_value(int(index), seed) for seed in range(3)]
        assert row["val_roc_auc_mean"] == pytest.approx(np.nanmean(values), abs=1e-12)
        for path, value in grid.cells[int(index)].values.items():
            assert row[path] == value
    best_first = table.sort_values("rank")["val_roc_auc_mean"].to_numpy()
    assert np.all(np.diff(best_first) <= 0)
    lower_better = parse_grid({**NESTED, "mode": "min"}, Config(), name="nested")
    ranks = cell_table(runs, lower_better).sort_values("rank")["val_roc_auc_mean"].to_numpy()
    assert np.all(np.diff(ranks) >= 0)


def test_summary_columns_hold_every_recall_at_k_a_cell_reports() -> None:
    """A grid over datasets with different Ks (the literature's, from ``eval.recall_at``)
    summarises each Recall@K any cell reports, once, after Recall@1."""
    base = Config()
    base = replace(base, eval=replace(base.eval, recall_at=(1, 2, 4)))
    grid = parse_grid(
        {"metric": "val_map_at_r", "factors": {"eval.recall_at": [[1, 2, 4], [1, 10]]}},
        base,
        name="recalls",
    )
    columns = list(summary_columns(grid))
    assert columns[0] == "val_map_at_r"
    recalls = [name for name in columns if name.startswith("test_recall_at_")]
    assert recalls == [f"test_recall_at_{k}" for k in (1, 2, 4, 10)]
    assert "test_map_at_r" in columns and "test_roc_auc" in columns
    plain = parse_grid(
        {"metric": "val_map_at_r", "factors": {"train.lr": [0.001]}}, Config(), name="p"
    )
    assert [name for name in summary_columns(plain) if "recall" in name] == ["test_recall_at_1"]
