"""A trial's trained network, logged to MLflow as a model the user can load and serve.

After a sweep or a re-training has ended, the driver rebuilds each chosen trial's network from
its last Tune checkpoint (the weights only, ``torch.load(weights_only=True)``) and saves it in
two forms in one MLflow model folder:

- MLflow's PyTorch flavour in its ``pt2`` format (``torch.export``), with a signature and an
  input example from the training classes: ``mlflow.pytorch.load_model("models:/<id>")``
  returns the exported graph, which MLflow loads without unpickling code (it checks the
  archive's records first), and ``mlflow.pyfunc`` serves it; no margin-tune class is named in
  it, so the package's module moves cannot break it;
- ``margin_tune/``: the folder :mod:`margin_tune.trainables.saved_model` writes (weights and
  the config that rebuilds the network), what ``margin-tune embed`` reads;

plus ``environment.txt``, the ``pip freeze`` of the environment that trained it. The upload
goes through the tracker's writer, off Tune's event loop and through store outages. Nothing of
this runs in a trial: the trials never talk to MLflow.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from margin_tune.pipeline.sweep.callback import SyncedTrial, first_line
from margin_tune.pipeline.sweep.trainable import CHECKPOINT_FILE
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    MEASURED_STATUSES,
    MODEL_ERROR_TAG,
    TRIAL_ID_TAG,
)
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Samples, split_classes
from margin_tune.trainables.models import SiameseEmbedder, build_model
from margin_tune.trainables.saved_model import save_embedder

_logger = logging.getLogger(__name__)

#: The name each trained network is logged under in its run.
MODEL_NAME = "embedder"
#: The folder of the model holding margin-tune's own format, and the environment's freeze.
OWN_FORMAT_DIR, FREEZE_FILE = "margin_tune", "environment.txt"
#: Rows of the input example: samples of the training classes.
EXAMPLE_ROWS = 4


def trained_network(trial: SyncedTrial, dataset: Samples) -> SiameseEmbedder | None:
    """The network of ``trial``'s last checkpoint, in eval mode; None without a checkpoint."""
    checkpoint = trial.result.checkpoint
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    model = build_model(trial.config.model, dataset.sample_shape)
    model.load_state_dict(state["model"])
    return model.eval()


def save_mlflow_model(
    model: SiameseEmbedder, config: Config, dataset: Samples, directory: Path
) -> Path:
    """Write ``model`` as an MLflow model folder (see the module's docstring)."""
    import mlflow.pytorch
    from mlflow.models import infer_signature

    train = split_classes(dataset.labels, config.dataset, dataset.given_test_classes).train_indices[
        :EXAMPLE_ROWS
    ]
    example = np.ascontiguousarray(dataset.take(train))
    with torch.inference_mode():
        output = model(torch.from_numpy(example)).numpy()
    mlflow.pytorch.save_model(
        model,
        str(directory),
        input_example=example,
        signature=infer_signature(example, output),
        # Pinned here, not inferred: MLflow's inference re-imports the model in a subprocess
        # (about 5 s a model); a pt2 archive needs torch alone.
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        serialization_format="pt2",
    )
    save_embedder(directory / OWN_FORMAT_DIR, model, config, dataset)
    (directory / FREEZE_FILE).write_text(pip_freeze(), encoding="utf-8")
    return directory


def log_trained_models(
    tracker: Tracker, trials: Iterable[SyncedTrial], dataset: Samples
) -> list[str]:
    """Log the network of every trial that was measured (completed or collapsed) to its run;
    the run ids it queued a model for."""
    logged = []
    with tempfile.TemporaryDirectory(prefix="margin-tune-model-") as scratch:
        for index, trial in enumerate(trials):
            if trial.status not in MEASURED_STATUSES:
                continue
            try:
                model = trained_network(trial, dataset)
                if model is None:
                    continue
                folder = save_mlflow_model(model, trial.config, dataset, Path(scratch) / str(index))
            except Exception as error:  # a model that cannot be kept must not
                # cost the sweep or comparison whose results are already recorded
                _logger.warning("trial %s: its network was not logged: %s", trial.trial_id, error)
                tracker.set_tags(
                    trial.run_id, {MODEL_ERROR_TAG: f"{type(error).__name__}: {first_line(error)}"}
                )
                continue
            epochs = int((trial.result.metrics or {}).get("epoch", 0))
            tracker.log_model(
                trial.run_id,
                folder,
                MODEL_NAME,
                step=epochs,
                tags={TRIAL_ID_TAG: trial.trial_id},
            )
            logged.append(trial.run_id)
    return logged


@functools.cache
def pip_freeze() -> str:
    """``name==version`` of every installed distribution, sorted: the environment, as
    ``pip freeze`` lists it (read from the installed metadata, without a subprocess). Read
    once per process: parsing every distribution's metadata took longer than the export."""
    names = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    return "\n".join(sorted(names, key=str.lower)) + "\n"


def logged_model_artifacts(uri: str, tracking_uri: str) -> str:
    """Where the artifacts of the model ``models:/<model id>``, ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION`` or ``runs:/<run id>/<name>`` live, asked of the store at
    ``tracking_uri`` (MLflow resolves a ``models:/`` URI against the process's global store,
    which need not be this one)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if uri.startswith("models:/"):
        reference = uri.removeprefix("models:/").strip("/")
        version = None
        if "@" in reference:  # a registered model's alias: models:/NAME@champion
            name, _, alias = reference.partition("@")
            version = client.get_model_version_by_alias(name, alias)
        elif "/" in reference:  # a registered model's version: models:/NAME/3
            name, _, number = reference.partition("/")
            version = client.get_model_version(name, number)
        if version is not None:
            # Over HTTP a version may come back without its model id; its source names it.
            source = str(version.source or "")
            reference = version.model_id or source.removeprefix("models:/").strip("/")
        return str(client.get_logged_model(reference).artifact_location)
    run_id, _, name = uri.removeprefix("runs:/").strip("/").partition("/")
    run = client.get_run(run_id)
    found = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{name or MODEL_NAME}'",
        max_results=1,
    )
    if not found:
        raise ValueError(f"run {run_id} logged no model named {name or MODEL_NAME!r}")
    return str(found[0].artifact_location)
