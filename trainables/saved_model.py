"""A trained embedder as a user keeps it: its weights, what rebuilds it, how its input is made.

A saved model is a folder of two files:

- ``model.json``: the format and its version, the margin-tune version that wrote it, the whole
  trial config (``model`` rebuilds the network through the model registry), the shape of one
  input sample, the embedding size, the preprocessing its training data went through, and the
  dataset it was trained on (name and fingerprint);
- ``weights.pt``: the network's ``state_dict``, read back with ``torch.load(weights_only=True)``.

Nothing in it is unpickled that could run code: the weights file holds tensors only, and the
network is rebuilt from its registry name (``model.name``), not from a pickled class, so moving
margin-tune's modules never breaks a saved model. A model saved by a later format version is
refused with a message, not misread.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from margin_tune.trainables.config import Config
from margin_tune.trainables.data import ImageFiles, Samples
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.models import SiameseEmbedder, build_model
from margin_tune.trainables.parts import config_from_dict

#: The folder a ``train`` output directory keeps its model in.
MODEL_DIR = "model"
MODEL_FILE, WEIGHTS_FILE = "model.json", "weights.pt"
FORMAT, FORMAT_VERSION = "margin-tune-embedder", 1
#: Samples embedded at once: bounds the memory of embedding a large dataset.
EMBED_CHUNK = 2048


def preprocessing(dataset: Samples, config: Config) -> dict[str, Any]:
    """How raw input becomes what the network takes, as the dataset's loader made it."""
    if isinstance(dataset, ImageFiles):
        return dataset.view.describe()
    if dataset.kind == "image":
        channels = dataset.sample_shape[0]
        return {
            "kind": "image",
            "channels": channels,
            "colour": "gray" if channels == 1 else "RGB",
            "resize": [config.dataset.image_size, config.dataset.image_size],
            "resample": "bilinear",
            "scale": "pixel values / 255, to [0, 1]",
            "layout": "N, C, H, W",
        }
    return {"kind": "vector", "dim": dataset.sample_shape[0], "scale": "none"}


def save_embedder(
    directory: Path, model: torch.nn.Module, config: Config, dataset: Samples
) -> Path:
    """Write ``model`` (trained on ``dataset`` with ``config``) to ``directory``, a new folder.

    The files are written beside and renamed into place, so a reader never sees half a model.
    """
    directory.mkdir(parents=True, exist_ok=False)
    input_shape = list(dataset.sample_shape)
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "margin_tune_version": _version(),
        "input_shape": input_shape,
        "embedding_dim": config.model.embedding_dim,
        "normalised": "L2: every embedding has unit norm",
        "preprocessing": preprocessing(dataset, config),
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()},
        "config": config.to_dict(),
    }
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    _write_atomically(directory / WEIGHTS_FILE, lambda path: torch.save(state, path))
    _write_atomically(
        directory / MODEL_FILE,
        lambda path: path.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8"),
    )
    return directory


@dataclass(frozen=True)
class SavedEmbedder:
    """A saved model, rebuilt: ``embed`` maps samples shaped like its training data to unit
    vectors."""

    path: Path
    config: Config
    model: SiameseEmbedder
    input_shape: tuple[int, ...]
    description: dict[str, Any]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.description["preprocessing"])

    def embed_samples(self, dataset: Samples, indices: np.ndarray) -> np.ndarray:
        """Embeddings of ``dataset``'s samples at ``indices``, read a chunk at a time, so that
        images on disk are never all decoded at once."""
        chunks = [
            self.embed(dataset.take(indices[start : start + EMBED_CHUNK]))
            for start in range(0, len(indices), EMBED_CHUNK)
        ]
        if not chunks:
            return np.zeros((0, self.config.model.embedding_dim), dtype=np.float32)
        return np.concatenate(chunks)

    def embed(self, features: np.ndarray, *, field: str = "--data") -> np.ndarray:
        """Embeddings (N, embedding_dim) float32 of ``features`` (N, *input_shape).

        A gray image set given to an RGB model is repeated over the three channels; any other
        shape that differs from the model's input is refused, naming ``field``.
        """
        samples = np.asarray(features, dtype=np.float32)
        if samples.ndim == 4 and samples.shape[1] == 1 and self.input_shape[0] == 3:
            samples = np.repeat(samples, 3, axis=1)
        if tuple(samples.shape[1:]) != self.input_shape:
            raise ConfigError(
                field,
                f"samples of shape {tuple(samples.shape[1:])}, the model at {self.path} takes "
                f"{self.input_shape} ({_describe(self.preprocessing)})",
            )
        with torch.inference_mode():
            chunks = [
                self.model(torch.from_numpy(samples[start : start + EMBED_CHUNK]))
                for start in range(0, len(samples), EMBED_CHUNK)
            ]
        if not chunks:
            return np.zeros((0, self.config.model.embedding_dim), dtype=np.float32)
        return torch.cat(chunks).numpy()


def load_embedder(path: str | Path, *, field: str = "--model") -> SavedEmbedder:
    """The model saved at ``path``: its folder, or a ``train`` output directory holding one.

    Raises:
        ConfigError: naming ``field``, for a missing or unreadable file, another format or a
            later version of it, or weights that do not fit the network the config builds.
    """
    folder = Path(path)
    if not (folder / MODEL_FILE).is_file() and (folder / MODEL_DIR / MODEL_FILE).is_file():
        folder = folder / MODEL_DIR
    description_file = folder / MODEL_FILE
    try:
        description = json.loads(description_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            field, f"{path} holds no saved model ({MODEL_FILE} and {WEIGHTS_FILE})"
        ) from None
    except (OSError, ValueError) as error:
        raise ConfigError(field, f"cannot read {description_file}: {error}") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ConfigError(field, f"{description_file} is not a {FORMAT} description")
    version = description.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(
            field,
            f"{description_file} has format version {version!r}; this margin-tune reads up to "
            f"{FORMAT_VERSION}: upgrade margin-tune",
        )
    try:
        config = config_from_dict(description["config"])
        input_shape = tuple(int(n) for n in description["input_shape"])
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(field, f"{description_file}: {error}") from None
    model = build_model(config.model, input_shape)
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError:
        raise ConfigError(field, f"{folder / WEIGHTS_FILE} is missing") from None
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise ConfigError(field, f"cannot load {folder / WEIGHTS_FILE}: {error}") from None
    model.eval()
    return SavedEmbedder(folder, config, model, input_shape, description)


def _describe(steps: dict[str, Any]) -> str:
    if steps.get("kind") == "image":
        height, width = steps["resize"]
        return f"{steps['colour']} images resized to {height} x {width}, {steps['scale']}"
    return f"vectors of {steps.get('dim')} features"


def _version() -> str:
    try:
        return metadata.version("margin-tune")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _write_atomically(target: Path, write: Any) -> None:
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
