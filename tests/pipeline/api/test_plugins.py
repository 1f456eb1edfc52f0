"""A user's own parts, without forking: registered from a script, or installed as a plug-in.

The plug-in test installs a real package into this venv (and removes it again); the script test
runs a real script whose scheduler Ray ships, by value, to the workers of its sweep.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tiny import TINY

import margin_tune
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.registry import Registry
from margin_tune.trainables.schedulers import SCHEDULERS, MarginScheduler

BIN = Path(sys.executable).parent
#: A scheduler no built-in one is: μ halves after every epoch.
HALVING = """
from margin_tune.trainables.schedulers import MarginScheduler


class HalvingMargin(MarginScheduler):
    def step(self, epoch, stats):
        self.margin /= 2
        return self.margin
"""
SPACE = {
    "metric": "val_map_at_r",
    "parameters": {
        "margin.scheduler": {"distribution": "fixed", "value": "halving"},
        "margin.initial_margin": {"distribution": "fixed", "value": 0.4},
        "train.lr": {"distribution": "log_uniform", "low": 1e-3, "high": 1e-2},
    },
}
EPOCHS = 3


def _flags(*overrides: str) -> list[str]:
    return [item for o in (*TINY, f"train.epochs={EPOCHS}", *overrides) for item in ("--set", o)]


class Quarter(MarginScheduler):
    def step(self, epoch: int, stats: object) -> float:
        return self.margin


def test_register_checks_the_role_and_the_name() -> None:
    with pytest.raises(ValueError, match="unknown role 'schedular'; allowed: dataset, loss"):
        margin_tune.register("schedular", "x", Quarter)
    with pytest.raises(ValueError, match="scheduler 'dams' is already registered"):
        margin_tune.register("scheduler", "dams", Quarter)
    try:
        assert margin_tune.register("scheduler", "quarter-test")(Quarter) is Quarter
        assert SCHEDULERS.get("quarter-test") is Quarter
        assert SCHEDULERS.added() == {"quarter-test": Quarter}
        config = margin_tune.resolve_config(overrides={"margin.scheduler": "quarter-test"})
        assert config.margin.scheduler == "quarter-test"
        with pytest.raises(ValueError, match="already registered"):
            margin_tune.register("scheduler", "quarter-test", Quarter)
        margin_tune.register("scheduler", "quarter-test", Quarter, replace=True)  # a rerun cell
    finally:
        SCHEDULERS._entries.pop("quarter-test", None)
        SCHEDULERS._added.pop("quarter-test", None)


def test_a_broken_plugin_names_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[margin_tune.widgets]\nnope = no_such_module:Nope\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    widgets: Registry[object] = Registry("widget")
    expected = "entry point 'nope' = 'no_such_module:Nope' of margin_tune.widgets failed to load"
    with pytest.raises(ConfigError, match=re.escape(f"{expected}: ModuleNotFoundError")):
        widgets.get("nope")


@pytest.mark.slow
def test_a_script_registers_a_scheduler_and_its_sweep_trains_with_it(tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    script = tmp_path / "study.py"
    script.write_text(
        HALVING
        + textwrap.dedent(
            f"""
            import json
            import margin_tune

            margin_tune.register("scheduler", "halving", HalvingMargin)
            result = margin_tune.tune(
                "space.yaml", trials=2, overrides={[*TINY, f"train.epochs={EPOCHS}"]!r},
                out="sweep", tracking_uri="sqlite:///mlflow.db", early_stopping=False,
            )
            print(json.dumps({{"status": list(result.trials["status"]),
                               "margin": list(result.trials["margin"])}}))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == ["completed", "completed"]
    # The margin the last epoch trained with: 0.4 halved after each epoch but the last.
    assert outcome["margin"] == pytest.approx([0.4 / 2 ** (EPOCHS - 1)] * 2)


@pytest.fixture
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real package declaring the ``halving`` scheduler as an entry point, installed here."""
    source = tmp_path_factory.mktemp("plugin")
    (source / "mt_test_plugin.py").write_text(HALVING)
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "margin-tune-test-plugin"
            version = "0.1"

            [project.entry-points."margin_tune.schedulers"]
            halving = "mt_test_plugin:HalvingMargin"
            """
        )
    )
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", str(source)],
        check=True,
        timeout=300,
    )
    try:
        yield "margin-tune-test-plugin"
    finally:
        subprocess.run([*pip, "uninstall", "-y", "margin-tune-test-plugin"], check=True)


@pytest.mark.slow
def test_an_installed_plugin_is_found_by_the_commands_and_by_rays_workers(
    installed_plugin: str, tmp_path: Path
) -> None:
    trained = subprocess.run(
        [
            str(BIN / "margin-tune"),
            "train",
            *_flags("margin.scheduler=halving", "margin.initial_margin=0.4"),
            "--out",
            str(tmp_path / "one"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["final"]["margin"] == pytest.approx(0.4 / 2 ** (EPOCHS - 1))

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    swept = subprocess.run(
        [
            str(BIN / "margin-tune"),
            "tune",
            "--space",
            "space.yaml",
            "--trials",
            "1",
            *_flags(),
            "--no-early-stopping",
            "--out",
            "sweep",
            "--tracking-uri",
            "sqlite:///mlflow.db",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert "1 trials: 1 completed" in swept.stdout
