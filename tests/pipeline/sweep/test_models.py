"""The best trial of a sweep logs its network to MLflow: a model in the run's Models column,
which ``mlflow.pytorch.load_model`` loads without unpickling code and which embeds as the
trial's own network did, and which ``margin-tune embed`` reads by its ``models:/`` URI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow.artifacts
import mlflow.pytorch
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient
from tiny import TINY

import margin_tune
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.sweep.models import FREEZE_FILE, MODEL_NAME, OWN_FORMAT_DIR
from margin_tune.pipeline.sweep.tuner import SweepResult
from margin_tune.pipeline.tracking.vocabulary import MODEL_ERROR_TAG, TRIAL_ID_TAG
from margin_tune.trainables.data import load_dataset, split_classes
from margin_tune.trainables.metric_names import MAP_AT_R, on_validation
from margin_tune.trainables.metrics import Evaluator

pytestmark = pytest.mark.slow


@dataclass
class Swept:
    result: SweepResult
    uri: str
    client: MlflowClient


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swept]:
    directory = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    result = margin_tune.tune(
        "constant",
        trials=2,
        overrides=[*TINY, "train.epochs=2"],
        out=directory / "sweep",
        early_stopping=False,
        searcher="random",
        tracking_uri=uri,
        experiment="models",
    )
    assert result.ok
    yield Swept(result, uri, MlflowClient(uri))


def best_model_id(swept: Swept) -> str:
    run = swept.client.get_run(swept.result.best["run_id"])
    assert run.outputs is not None
    (output,) = run.outputs.model_outputs
    return str(output.model_id)


def test_only_the_best_trial_logs_its_network(swept: Swept) -> None:
    model_id = best_model_id(swept)
    model = swept.client.get_logged_model(model_id)
    assert model.name == MODEL_NAME and str(model.status) in ("READY", "LoggedModelStatus.READY")
    assert model.source_run_id == swept.result.best["run_id"]
    assert model.tags[TRIAL_ID_TAG] == swept.result.best[TRIAL_ID_TAG]
    others = [r for r in swept.result.trials["run_id"] if r != swept.result.best["run_id"]]
    for run_id in others:
        outputs = swept.client.get_run(run_id).outputs
        assert outputs is None or not outputs.model_outputs


def test_the_logged_model_loads_without_pickle_and_embeds_as_the_trial_did(
    swept: Swept, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its validation MAP@R, recomputed from what ``mlflow.pytorch.load_model`` returns, is
    the value the trial reported at its last epoch."""
    model_id = best_model_id(swept)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", swept.uri)  # what models:/ resolves against
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_id}", dst_path=str(tmp_path)
        )
    )
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["pytorch"]
    # torch.export's archive, no pickled module (MLflow writes model.pth for that).
    assert (local / "data" / "model.pt2").is_file() and not (local / "data" / "model.pth").exists()
    assert flavor["model_data"] == "data"
    assert "torch==" in (local / FREEZE_FILE).read_text()
    signature = json.loads(yaml.safe_load((local / "MLmodel").read_text())["signature"]["inputs"])
    assert signature[0]["tensor-spec"]["shape"] == [-1, 64]

    # MLflow checks that the archive holds no pickle unless this is set: it is not.
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    network = mlflow.pytorch.load_model(f"models:/{model_id}")
    config = swept.result.best_config
    assert config is not None
    dataset = load_dataset(config.dataset)
    validation = split_classes(dataset.labels, config.dataset).val_indices
    with torch.inference_mode():
        embedded = network(torch.from_numpy(dataset.features[validation]))
    evaluator = Evaluator(
        dataset.labels[validation], max_pairs=config.eval.max_pairs, seed=config.eval.pair_seed
    )
    reported = swept.result.best[on_validation(MAP_AT_R)]
    assert evaluator(embedded)[MAP_AT_R] == pytest.approx(reported, abs=1e-6)
    # margin-tune's own copy beside it embeds the same to 1e-6.
    own = margin_tune.embed(local / OWN_FORMAT_DIR, classes="val")
    np.testing.assert_allclose(own.embeddings, embedded.numpy(), atol=1e-6, rtol=0)


def test_embed_reads_a_logged_model_by_its_uri(
    swept: Swept, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "e.npz"
    command = ["embed", "--model", f"models:/{best_model_id(swept)}", "--out", str(out)]
    assert main([*command, "--tracking-uri", swept.uri, "--classes", "test"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert np.load(out)["X"].shape[1] == 16
    other = str(tmp_path / "other.npz")
    bad = ["embed", "--model", "models:/m-0000", "--tracking-uri", swept.uri, "--out", other]
    assert main(bad) == 2
    assert "margin-tune: error: --model: cannot read models:/m-0000" in capsys.readouterr().err


def test_a_network_that_cannot_be_logged_costs_the_sweep_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export that fails (a plug-in model torch.export refuses, a full disk) is a tag on
    the run, not a failed sweep."""
    from margin_tune.pipeline.sweep import models

    def refuse(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("export refused")

    monkeypatch.setattr(models, "save_mlflow_model", refuse)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = margin_tune.tune(
        "constant",
        trials=1,
        overrides=[*TINY, "train.epochs=1"],
        out=tmp_path / "sweep",
        early_stopping=False,
        tracking_uri=uri,
        experiment="refused",
    )
    assert result.ok
    client = MlflowClient(uri)
    best = client.get_run(result.best["run_id"])
    assert best.data.tags[MODEL_ERROR_TAG] == "RuntimeError: export refused"
    assert best.outputs is None or not best.outputs.model_outputs
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
