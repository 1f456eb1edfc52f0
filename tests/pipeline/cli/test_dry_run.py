"""``--dry-run``: everything checked, the plan and a rough wall time printed; nothing written, no
MLflow run, no Ray.

Each command runs in this process with a store and an output directory inside an empty
folder; afterwards the folder is still empty, Ray was never initialised here, and no process
of this one's is a Ray process.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import ray
import yaml
from sockets import descendants, process_name
from tiny import TINY

import margin_tune
from margin_tune.pipeline.cli.main import main
from margin_tune.trainables.errors import ConfigError

FLAGS = [item for override in (*TINY, "train.epochs=4") for item in ("--set", override)]


def _quick_compare(folder: Path) -> Path:
    spec = folder.parent / "compare.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "methods": {"dams": "dams", "constant": "constant"},
                "baselines": ["constant"],
                "budget": {"trials": 3, "epochs": 4},
                "seeds": 2,
                "set": list(TINY),
            }
        )
    )
    return spec


@pytest.mark.parametrize(
    ("command", "budget"),
    [
        (
            ["tune", "--space", "dams", "--trials", "6", *FLAGS],
            "trials 6, epochs 4, trial-epochs 24",
        ),
        (
            ["compare", "--config", "{spec}"],
            "splits 1, methods 2, trials 3, seeds 2, epochs 4, runs 10, trial-epochs 40",
        ),
        (
            ["ablate", "--grid", "schedulers", "--seeds", "2", *FLAGS],
            "cells 14, seeds 2, epochs 4, runs 28, trial-epochs 112",
        ),
    ],
    ids=["tune", "compare", "ablate"],
)
def test_dry_run_prints_the_plan_and_leaves_nothing(
    command: list[str],
    budget: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    spec = _quick_compare(folder)
    argv = [arg.replace("{spec}", str(spec)) for arg in command]
    where = ["--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--out", str(folder / "out")]
    assert main([*argv, *where, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"budget: {budget}\n" in printed
    assert re.search(r"one epoch here: \d+\.\d\d s; at concurrency 2 about \d+ (s|min)", printed)
    assert "config:\n  seed:" in printed
    assert list(folder.iterdir()) == []
    assert not ray.is_initialized()
    ray_children = {process_name(pid) for pid in descendants(os.getpid())} & {
        "raylet",
        "gcs_server",
    }
    assert ray_children == set()


def test_a_dry_run_refuses_bad_input_like_the_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"parameters": {"train.lr": {"distribution": "fixed"}}}))
    with pytest.raises(ConfigError, match=r"space\.parameters"):
        margin_tune.plan_tune(bad, trials=2)
    plan = margin_tune.plan_tune("constant", trials=2, overrides=[*TINY, "train.epochs=3"])
    assert plan.budget == {"trials": 2, "epochs": 3, "trial_epochs": 6}
    assert plan.estimate_seconds == pytest.approx(6 * plan.epoch_seconds / 2)
    assert list(plan.spaces) == ["constant"]


def test_compare_takes_mapping_overrides_with_their_types(tmp_path: Path) -> None:
    """A mapping's values reach the spec as given: None is null (not the string "None"), and a
    string holding ": " stays a string."""
    spec = _quick_compare(tmp_path / "work")
    plan = margin_tune.plan_compare(
        spec, overrides={"train.batches_per_epoch": None, "train.epochs": 3, "train.lr": 0.002}
    )
    assert plan.base.train.batches_per_epoch is None
    assert plan.base.train.epochs == 3 and plan.base.train.lr == 0.002
    with pytest.raises(ConfigError, match=r"margin\.scheduler: .*'no: such'"):
        margin_tune.plan_compare(spec, overrides={"margin.scheduler": "no: such"})


def test_a_compare_dry_run_says_which_method_a_population_tunes(tmp_path: Path) -> None:
    spec = tmp_path / "compare.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "methods": {
                    "pbt": {"space": "dams", "population": {"perturbation_interval": 3}},
                    "constant": "constant",
                },
                "budget": {"trials": 4, "epochs": 4},
                "seeds": 2,
                "set": list(TINY),
            }
        )
    )
    text = margin_tune.plan_compare(spec, out=tmp_path / "out").render()
    assert (
        "space pbt [a population of 4, perturbation interval 3; its learned schedule replayed]"
        in text
    )
    assert "space constant (val_map_at_r, max):" in text
    assert "trial-epochs 48" in text  # 2 methods x (4 members or trials + 2 seeds) x 4 epochs
    assert not (tmp_path / "out").exists()
