"""``margin_tune.embed``: a saved model's embeddings of a dataset; what ``embed`` runs.

The data is read by the same loaders as training, so it goes through the preprocessing the
model was trained with: an ``.npz`` file (``X`` and ``y``, as ``dataset.name=npz`` reads it),
a folder of class subfolders of images (resized to the model's ``dataset.image_size``), or, with
no data given, the dataset the model was trained on, regenerated or re-read from its config.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from margin_tune.pipeline.api.config import Overrides, resolve_config
from margin_tune.pipeline.outputs.folders import check_new_file, write_new_file
from margin_tune.pipeline.sweep.callback import first_line
from margin_tune.trainables.config import Config, DatasetConfig, parse_override
from margin_tune.trainables.data import Samples, load_dataset, split_classes
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.saved_model import SavedEmbedder, load_embedder

#: Which samples of the dataset are embedded: all, or those of one part of the model's class
#: split (meaningful for the dataset it was trained on).
CLASS_PARTS = ("all", "train", "val", "test")


@dataclass(frozen=True)
class EmbedResult:
    """Embeddings of a dataset's samples, in the dataset's order."""

    embeddings: np.ndarray
    """(N, embedding_dim) float32, unit norm."""
    labels: np.ndarray
    class_names: tuple[str, ...]
    dataset: Samples
    model: SavedEmbedder
    out: Path | None = None


def embed(
    model: str | Path,
    data: str | Path | None = None,
    overrides: Overrides = (),
    *,
    classes: str = "all",
    out: str | Path | None = None,
    tracking_uri: str | None = None,
) -> EmbedResult:
    """Embed a dataset with the model saved at ``model``: a ``train`` output directory or its
    ``model/`` folder, or a model that a sweep or comparison logged to MLflow
    (``models:/<model id>``, ``runs:/<run id>/embedder``, read from ``tracking_uri``).

    Args:
        data: an ``.npz`` file, an image folder, or None for the model's own dataset.
        overrides: ``dataset.*`` values over the data's config, e.g. ``{"dataset.noise": 0.5}``.
        classes: ``all``, or ``train`` / ``val`` / ``test``: the classes of that part of the
            model's own class split.
        out: an ``.npz`` file to write (``X`` the embeddings, ``y`` the labels,
            ``class_names``); it must not exist. None writes nothing.

    Raises:
        ConfigError: naming ``--model``, ``--data``, ``--set``, ``--classes`` or ``--out``.
    """
    if classes not in CLASS_PARTS:
        raise ConfigError(
            "--classes", f"unknown value {classes!r}; allowed: {', '.join(CLASS_PARTS)}"
        )
    target = Path(out) if out is not None else None
    if target is not None:
        check_new_file(target, ".npz")
    saved = load_saved(model, tracking_uri)
    dataset = load_dataset(data_config(saved.config, data, overrides))
    indices = _chosen(dataset, saved.config, classes)
    embeddings = saved.embed_samples(dataset, indices)
    labels = dataset.labels[indices]
    if target is not None:
        _write_npz(target, embeddings, labels, dataset.class_names)
    return EmbedResult(embeddings, labels, dataset.class_names, dataset, saved, target)


def data_config(config: Config, data: str | Path | None, overrides: Overrides) -> DatasetConfig:
    """The dataset config that reads ``data`` as the model's training data was read."""
    items = list(
        overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    )
    for key, _ in items:
        if not str(key).startswith("dataset."):
            raise ConfigError("--set", f"{key}: embed takes dataset.* values only")
    source: dict[str, Any] = {}
    if data is not None:
        path = Path(data)
        if path.is_dir():
            source = {"dataset.name": "image_folder", "dataset.path": str(path)}
        elif path.suffix.lower() == ".npz" and path.is_file():
            source = {"dataset.name": "npz", "dataset.path": str(path)}
        else:
            raise ConfigError(
                "--data", f"{path} is neither an .npz file nor a folder of class subfolders"
            )
    return resolve_config(config, {**source, **dict(items)}).dataset


#: URIs of a model MLflow holds, as ``mlflow.artifacts.download_artifacts`` resolves them.
MLFLOW_MODEL_SCHEMES = ("models:/", "runs:/")


def load_saved(model: str | Path, tracking_uri: str | None) -> SavedEmbedder:
    """A local saved model, or margin-tune's folder of a logged MLflow model, downloaded."""
    if not str(model).startswith(MLFLOW_MODEL_SCHEMES):
        return load_embedder(model)
    import mlflow.artifacts

    from margin_tune.pipeline.sweep.models import OWN_FORMAT_DIR, logged_model_artifacts
    from margin_tune.pipeline.tracking.store import resolve_tracking_uri

    store = resolve_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="margin-tune-embed-") as scratch:
        try:
            location = logged_model_artifacts(str(model), store)
            folder = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{location.rstrip('/')}/{OWN_FORMAT_DIR}",
                dst_path=scratch,
                tracking_uri=store,
            )
        except Exception as error:  # MLflow raises its own and OSError kinds for a bad URI
            raise ConfigError("--model", f"cannot read {model}: {first_line(error)}") from None
        return load_embedder(folder)  # read whole into memory: the download can go


def _chosen(dataset: Samples, config: Config, classes: str) -> np.ndarray:
    if classes == "all":
        return np.arange(len(dataset.labels))
    return part_indices(dataset, config)[classes]


def part_indices(dataset: Samples, config: Config) -> dict[str, np.ndarray]:
    """The sample indices of each part of ``config``'s class split of ``dataset``."""
    split = split_classes(dataset.labels, config.dataset, dataset.given_test_classes)
    return {"train": split.train_indices, "val": split.val_indices, "test": split.test_indices}


def _write_npz(target: Path, embeddings: np.ndarray, labels: np.ndarray, names: tuple) -> None:
    write_new_file(
        target,
        lambda path: np.savez(path, X=embeddings, y=labels, class_names=np.array(names, dtype=str)),
    )
