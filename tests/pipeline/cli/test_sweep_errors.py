"""``tune`` and ``compare`` refuse bad input before Ray, MLflow or any output exists."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import ray

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import load_config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune", "--space", "nope", "--trials", "2"], "--space: 'nope' is neither a file"),
        (["tune", "--space", "dams", "--trials", "0"], "--trials: must be >= 1"),
        (["tune", "--space", "dams", "--trials", "2", "--searcher", "grid"], "allowed: coordinate"),
        (["tune", "--space", "dams", "--trials", "2", "--concurrency", "0"], "--concurrency"),
        (["tune", "--space", "dams", "--trials", "2", "--cpus-per-trial", "0"], "cpus-per-trial"),
        (["tune", "--space", "dams", "--trials", "2", "--gpus-per-trial", "-1"], "gpus-per-trial"),
        (["tune", "--space", "dams", "--trials", "2", "--grace-period", "99"], "train.epochs"),
        (
            ["tune", "--space", "dams", "--trials", "2", "--set", "dataset.val_fraction=0.01"],
            "dataset.val_fraction",
        ),
        (["compare", "--preset", "quick", "--set", "seed=-"], "seed: must be an integer"),
        (["compare", "--preset", "quick", "--searcher", "grid"], "--searcher"),
    ],
)
def test_bad_sweep_input_exits_2_and_leaves_nothing_behind(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main([*args, "--out", str(out)])
    finally:
        os.chdir(cwd)
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no out dir, no mlflow.db
    assert not ray.is_initialized()


def test_grace_period_only_binds_when_asha_stops_trials(tmp_path: Path) -> None:
    """Without early stopping the grace period means nothing: a 1-epoch sweep must plan."""
    base = load_config(overrides=["train.epochs=1"])
    space = load_space("constant", base)
    options = SweepOptions(trials=2, early_stopping=False, grace_period=2)
    assert plan_sweep("s", base, space, options, tmp_path / "out").base.train.epochs == 1
    with pytest.raises(ConfigError, match=r"--grace-period: must be <= train\.epochs"):
        plan_sweep("s", base, space, dataclasses.replace(options, early_stopping=True), tmp_path)
