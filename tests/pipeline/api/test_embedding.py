"""What ``train`` keeps of its network, and ``embed``: the saved model rebuilt without
unpickling code embeds as the trial's own network did, data of any source is read as the
training data was, and bad input is refused naming its flag, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import TINY

import margin_tune
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.runtime.exit_codes import EXIT_BAD_INPUT
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.saved_model import (
    MODEL_DIR,
    MODEL_FILE,
    WEIGHTS_FILE,
    load_embedder,
)

GLYPHS = (
    "dataset.name=glyphs",
    "dataset.num_classes=12",
    "dataset.samples_per_class=8",
    "dataset.image_size=16",
    "dataset.train_fraction=0.5",
    "dataset.val_fraction=0.25",
    "model.name=cnn",
    "model.hidden_dims=[8]",
    "model.embedding_dim=8",
    "sampler.classes_per_batch=4",
    "sampler.samples_per_class=2",
    "train.epochs=1",
    "train.num_threads=1",
    "train.device=cpu",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> margin_tune.TrainResult:
    out = tmp_path_factory.mktemp("train") / "run"
    return margin_tune.train(overrides=[*TINY, "train.epochs=2"], out=out, save_embeddings=True)


def test_the_saved_model_embeds_as_the_trials_own_network(
    trained: margin_tune.TrainResult,
) -> None:
    assert trained.out is not None and trained.test_embeddings is not None
    again = margin_tune.embed(trained.out, classes="test")
    assert again.embeddings.shape == trained.test_embeddings.shape
    np.testing.assert_allclose(again.embeddings, trained.test_embeddings, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(again.labels, trained.test_labels)
    norms = np.linalg.norm(again.embeddings, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_the_saved_model_holds_tensors_and_names_not_code(
    trained: margin_tune.TrainResult,
) -> None:
    assert trained.out is not None
    folder = trained.out / MODEL_DIR
    assert sorted(p.name for p in folder.iterdir()) == [MODEL_FILE, WEIGHTS_FILE]
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)  # tensors only
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    description = json.loads((folder / MODEL_FILE).read_text())
    # No Python path to a class: a module move of margin-tune cannot break the model.
    assert "margin_tune." not in (folder / MODEL_FILE).read_text()
    assert description["config"]["model"]["name"] == "mlp"
    assert description["input_shape"] == [trained.config.dataset.dim]
    assert description["preprocessing"] == {"kind": "vector", "dim": 64, "scale": "none"}
    assert len(description["dataset"]["fingerprint"]) == 64


def test_embed_command_end_to_end_on_an_npz_file(
    trained: margin_tune.TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trained.out is not None
    rng = np.random.default_rng(7)
    data = tmp_path / "new.npz"
    np.savez(data, X=rng.standard_normal((30, 64)).astype(np.float32), y=np.repeat(range(3), 10))
    out = tmp_path / "embeddings.npz"
    assert main(["embed", "--model", str(trained.out), "--data", str(data), "--out", str(out)]) == 0
    assert f"wrote {out}: X, y, class_names" in capsys.readouterr().out
    written = np.load(out)
    assert written["X"].shape == (30, trained.config.model.embedding_dim)
    np.testing.assert_array_equal(written["y"], np.repeat(range(3), 10))
    saved = load_embedder(trained.out)
    np.testing.assert_allclose(written["X"], saved.embed(np.load(data)["X"]), atol=1e-6)
    # A second run never overwrites the file.
    before = out.read_bytes()
    assert main(["embed", "--model", str(trained.out), "--out", str(out)]) == EXIT_BAD_INPUT
    assert "margin-tune: error: --out: " in capsys.readouterr().err
    assert out.read_bytes() == before


def test_an_image_model_reads_a_folder_as_its_training_images_were_read(
    tmp_path: Path,
) -> None:
    """Gray PNGs of another size are resized to the model's image size and scaled to [0, 1]."""
    model = margin_tune.train(overrides=list(GLYPHS), out=tmp_path / "glyphs").out
    assert model is not None
    description = json.loads((model / MODEL_DIR / MODEL_FILE).read_text())
    assert description["preprocessing"]["resize"] == [16, 16]
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for index in range(3):
            pixels = rng.integers(0, 256, (40, 40), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / "images" / name / f"{index}.png")
    result = margin_tune.embed(model, tmp_path / "images")
    assert result.embeddings.shape == (6, 8)
    assert result.class_names == ("a", "b")
    assert float(result.dataset.features.max()) <= 1.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--model", "{tmp}/nothing"], "--model"),
        (["--data", "{tmp}/absent.txt"], "--data"),
        (["--data", "{tmp}/narrow.npz"], "--data"),
        (["--set", "train.lr=0.1"], "--set"),
        (["--set", "dataset.noise=-1"], "dataset.noise"),
        (["--classes", "holdout"], "--classes"),
    ],
)
def test_bad_input_is_refused_naming_the_flag_and_writes_nothing(
    trained: margin_tune.TrainResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    field: str,
) -> None:
    assert trained.out is not None
    np.savez(tmp_path / "narrow.npz", X=np.zeros((4, 5), np.float32), y=np.arange(4) % 2)
    out = tmp_path / "e.npz"
    given = [a.replace("{tmp}", str(tmp_path)) for a in args]
    command = ["embed", *(["--model", str(trained.out)] if "--model" not in given else [])]
    assert main([*command, *given, "--out", str(out)]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert error.startswith(f"margin-tune: error: {field}")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.npz"]


def test_a_later_format_is_refused_not_misread(
    trained: margin_tune.TrainResult, tmp_path: Path
) -> None:
    assert trained.out is not None
    folder = tmp_path / "model"
    folder.mkdir()
    description = json.loads((trained.out / MODEL_DIR / MODEL_FILE).read_text())
    (folder / MODEL_FILE).write_text(json.dumps({**description, "format_version": 99}))
    (folder / WEIGHTS_FILE).write_bytes((trained.out / MODEL_DIR / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ConfigError, match="format version 99; this margin-tune reads up to 1"):
        load_embedder(folder)
