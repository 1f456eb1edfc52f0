"""The Python API: what a script or notebook calls, and what every command's handler calls.

Each function runs for real (Ray, MLflow, Optuna); the handler tests put a recording wrapper
around the API function, which still runs it, and check that the command went through it, in
this process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from tiny import TINY

import margin_tune
from margin_tune.pipeline import api
from margin_tune.pipeline.api.config import OPTUNA_JOURNAL, with_default_storage
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.outputs.manifest import read_manifest
from margin_tune.pipeline.search.study import study_storage
from margin_tune.pipeline.sweep.callback import path_slug
from margin_tune.pipeline.sweep.plan import SweepOptions
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG
from margin_tune.trainables.config import Config, default_config_path, parse_override
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import COUNT_KEYS, EVALUATION_METRICS, on_test

TEST_COLUMNS = {on_test(name) for name in (*EVALUATION_METRICS, *COUNT_KEYS)}
TWO_EPOCHS = [*TINY, "train.epochs=2"]


def test_every_exported_name_is_the_function_not_a_module() -> None:
    """A submodule named like its function would shadow it once imported."""
    for name in api.__all__:
        assert not isinstance(getattr(api, name), type(api)), name
        assert getattr(margin_tune, name) is getattr(api, name)
    assert set(api.__all__) <= set(margin_tune.__all__)


def test_train_returns_history_and_test_metrics_and_writes_nothing_without_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    seen: list[int] = []
    result = margin_tune.train(overrides=TWO_EPOCHS, on_epoch=lambda r: seen.append(r.epoch))
    assert isinstance(result, margin_tune.TrainResult)
    assert seen == [1, 2] and list(result.history["epoch"]) == [1.0, 2.0]
    assert set(result.test_metrics) == TEST_COLUMNS
    assert 0.0 <= result.test_metrics["test_roc_auc"] <= 1.0
    assert result.stop_reason == "completed" and result.out is None
    assert list(tmp_path.iterdir()) == []


def test_train_takes_a_mapping_with_mapping_overrides_and_writes_its_directory(
    tmp_path: Path,
) -> None:
    base = yaml.safe_load(default_config_path().read_text())
    overrides = dict(map(parse_override, TWO_EPOCHS))
    result = margin_tune.train(
        base,
        {**overrides, "margin.scheduler": "constant"},
        out=tmp_path / "run",
        save_embeddings=True,
    )
    assert result.config.margin.scheduler == "constant" and result.config.train.epochs == 2
    assert result.out == tmp_path / "run"
    summary = json.loads((result.out / "summary.json").read_text())
    assert {key: summary[key] for key in TEST_COLUMNS} == result.test_metrics
    assert len(pd.read_csv(result.out / "metrics.csv")) == 2
    assert result.test_embeddings is not None and result.test_labels is not None
    assert len(result.test_embeddings) == len(result.test_labels) > 0


def test_bad_input_raises_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        margin_tune.train(overrides={"train.epochs": 0}, out=tmp_path / "never")
    with pytest.raises(TypeError, match=r"concurency.*allowed: .*concurrency"):
        margin_tune.tune("dams", trials=1, out=tmp_path / "never", concurency=2)
    with pytest.raises(ConfigError, match="--space"):
        margin_tune.tune("no-such-space", trials=1, out=tmp_path / "never")
    assert list(tmp_path.iterdir()) == []


def test_the_optuna_study_defaults_to_the_output_directory_on_this_machine_only(
    tmp_path: Path,
) -> None:
    local = with_default_storage(SweepOptions(trials=2), tmp_path / "out")
    assert local.storage == str((tmp_path / "out" / OPTUNA_JOURNAL).resolve())
    given = with_default_storage(SweepOptions(trials=2, storage="sqlite:///x.db"), tmp_path)
    assert given.storage == "sqlite:///x.db"
    cluster = with_default_storage(SweepOptions(trials=2, address="10.0.0.1:6379"), tmp_path)
    assert cluster.storage is None  # shared storage: the study stays in memory


def test_trial_folders_are_ascii_slugs_of_the_run_names() -> None:
    assert (
        path_slug("dams μ0=0.297 target=0.907 lr=1e-03") == "dams_mu0-0.297_target-0.907_lr-1e-03"
    )
    assert path_slug("contrastive λ=0.5 dams seed=3") == "contrastive_lambda-0.5_dams_seed-3"
    assert path_slug("ü/../x" * 40).isascii() and len(path_slug("a b" * 100)) <= 80
    assert "/" not in path_slug("a/../b") and path_slug("μ") == "mu" and path_slug("///") == "trial"


class Recorder:
    """Wraps an API function: records each call, then runs the real function."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        real = getattr(module, name)

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((args, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, record)


def test_the_train_command_calls_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from margin_tune.pipeline.api import training

    recorder = Recorder(monkeypatch, training, "train")
    overrides = [item for override in TWO_EPOCHS for item in ("--set", override)]
    assert main(["train", *overrides, "--out", str(tmp_path / "run")]) == 0
    ((args, kwargs),) = recorder.calls
    assert list(args[1]) == TWO_EPOCHS and kwargs["out"] == tmp_path / "run"
    assert "test  roc_auc" in capsys.readouterr().out


@pytest.mark.slow
def test_tune_ablate_and_report_from_python_and_their_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from margin_tune.pipeline.api import ablation, reporting, sweeping

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = {"tracking_uri": uri, "experiment": "api"}
    result = margin_tune.tune(
        "dams",
        trials=2,
        overrides=TWO_EPOCHS,
        out=tmp_path / "sweep",
        concurrency=2,
        early_stopping=False,
        searcher="random",
        **store,
    )
    assert result.ok and len(result.trials) == 2 and (result.out / "trials.csv").is_file()
    best = result.best_config
    assert isinstance(best, Config) and best.margin.scheduler == "dams"
    # The Optuna study lives in the output directory, where `ui --sweep-dir` finds it.
    storage = read_manifest(result.out, ("tune",))["options"]["storage"]
    assert storage == str((tmp_path / "sweep" / OPTUNA_JOURNAL).resolve())
    (study,) = optuna.get_all_study_summaries(study_storage(storage))
    assert study.n_trials == 2
    # Tune's trial folders are named after the MLflow runs, in ASCII, with the trial id.
    client = MlflowClient(uri)
    names = {
        run.data.tags[TRIAL_ID_TAG]: run.info.run_name
        for run in client.search_runs([client.get_experiment_by_name("api").experiment_id])
        if TRIAL_ID_TAG in run.data.tags
    }
    folders = sorted(p.name for p in (result.out / "tune").iterdir() if p.is_dir())
    assert folders == sorted(f"{path_slug(name)}_{trial}" for trial, name in names.items())
    assert all(name.startswith("dams μ0=") for name in names.values())
    assert best.margin.initial_margin == result.best["config.margin.initial_margin"]

    sweeps = margin_tune.report("api", tracking_uri=uri)
    assert list(sweeps["sweep_id"]) == [result.plan.sweep_id]
    trials = margin_tune.report("api", sweep=result.plan.sweep_id, tracking_uri=uri)
    assert sorted(trials["trial_id"]) == sorted(result.trials[TRIAL_ID_TAG])

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump({"seeds": 1, "factors": {"margin.scheduler": ["dams", "constant"]}})
    )
    cells = margin_tune.ablate(grid, overrides=TWO_EPOCHS, out=tmp_path / "grid", **store)
    assert sorted(cells.cells["cell"]) == ["constant", "dams"]
    assert (cells.out / "table.md").is_file() and len(cells.runs) == 2

    # The commands go through the same functions, in this process.
    recorders = {
        "tune": Recorder(monkeypatch, sweeping, "tune"),
        "ablate": Recorder(monkeypatch, ablation, "ablate"),
        "report": Recorder(monkeypatch, reporting, "report_tables"),
    }
    flags = [item for override in TWO_EPOCHS for item in ("--set", override)]
    where = ["--tracking-uri", uri, "--experiment", "api"]
    assert (
        main(
            [
                "tune",
                "--space",
                "constant",
                "--trials",
                "1",
                *flags,
                *where,
                "--out",
                str(tmp_path / "cli-sweep"),
            ]
        )
        == 0
    )
    assert (
        main(["ablate", "--grid", str(grid), *flags, *where, "--out", str(tmp_path / "cli-grid")])
        == 0
    )
    assert main(["report", "--tracking-uri", uri, "--experiment", "api"]) == 0
    assert [len(r.calls) for r in recorders.values()] == [1, 1, 1]
    assert recorders["tune"].calls[0][0] == ("constant",)
    assert recorders["report"].calls[0][0] == ("api",)
