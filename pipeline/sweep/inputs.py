"""What each run trained and was scored on, as MLflow dataset inputs (``mlflow.log_input``).

A run gets one input per part of the class split it used: ``training`` and ``validation`` for a
tuning trial (it never sees the test classes), ``test`` too for a re-training or an ablation
cell. Each input names the source (a file's path, or the generator and its parameters), carries
a digest of the samples *and* of the part's classes, and lists those classes in its profile,
so two runs on different splits show different datasets in the UI's Samples column.

Everything is computed once per sweep, in the driver, from the data the sweep already holds:
the dataset's SHA-256 (cached on the :class:`Samples`) and one class split per split config.
Trials only look their records up by their config's split (:meth:`DatasetInputs.for_config`),
so the per-trial cost is one queued ``log_inputs`` call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.schema import TensorDatasetSchema
from mlflow.types import Schema, TensorSpec

from margin_tune.pipeline.tracking.records import DatasetRecord
from margin_tune.trainables.config import Config, DatasetConfig
from margin_tune.trainables.data import GENERATOR_FIELDS, Samples, split_classes

#: The ``mlflow.data.context`` of each part of the class split.
TRAINING, VALIDATION, TEST = "training", "validation", "test"
#: What a tuning trial uses: it is selected on validation and never sees the test classes.
TUNING_CONTEXTS = (TRAINING, VALIDATION)
#: What a re-training or an ablation cell uses: it is scored on the test classes.
SCORED_CONTEXTS = (TRAINING, VALIDATION, TEST)
#: The fields that place a config's class split (the same data, another split, other inputs).
SPLIT_FIELDS = ("split_seed", "train_fraction", "val_fraction")
#: MLflow's source type of a dataset read from a local path.
LOCAL_SOURCE = "local"
#: Hex digits of a part's digest: MLflow shows it beside the name and allows 36.
DIGEST_CHARS = 16


def split_key(config: DatasetConfig) -> str:
    """What tells one class split of a dataset from another: its seed and fractions."""
    return ",".join(f"{name}={getattr(config, name)}" for name in SPLIT_FIELDS)


class DatasetInputs:
    """The dataset inputs of every run of a sweep or grid, by class split.

    Plain data (strings), so that Tune can pickle it with the callbacks that log it.
    """

    def __init__(self, records: dict[str, tuple[DatasetRecord, ...]]) -> None:
        self.records = records

    @classmethod
    def build(
        cls,
        dataset: Samples,
        configs: Iterable[DatasetConfig],
        contexts: tuple[str, ...] = TUNING_CONTEXTS,
    ) -> DatasetInputs:
        """One set of ``contexts`` records for each distinct class split among ``configs``
        (each config must be the one ``dataset`` was loaded from, up to its split)."""
        records: dict[str, tuple[DatasetRecord, ...]] = {}
        for config in configs:
            key = split_key(config)
            if key not in records:
                records[key] = dataset_records(dataset, config, contexts)
        return cls(records)

    def every_record(self) -> tuple[DatasetRecord, ...]:
        """The records of every split: what a run spanning them (a comparison) logs."""
        return tuple(record for records in self.records.values() for record in records)

    def for_config(self, config: Config) -> tuple[DatasetRecord, ...]:
        """The records of the split ``config`` trains on.

        Raises:
            KeyError: the sweep was not built with that split (a bug of the caller: a space
                cannot search the ``dataset.*`` fields).
        """
        key = split_key(config.dataset)
        if key not in self.records:
            raise KeyError(f"no dataset inputs were built for the class split {key}")
        return self.records[key]


def dataset_records(
    dataset: Samples, config: DatasetConfig, contexts: tuple[str, ...]
) -> tuple[DatasetRecord, ...]:
    """The records of ``dataset`` split as ``config`` says, one per context."""
    split = split_classes(dataset.labels, config, dataset.given_test_classes)
    parts = {
        TRAINING: (split.train_classes, split.train_indices),
        VALIDATION: (split.val_classes, split.val_indices),
        TEST: (split.test_classes, split.test_indices),
    }
    source_type, source = dataset_source(config)
    sample_shape = (-1, *dataset.sample_shape)
    schema = json.dumps(
        TensorDatasetSchema(
            features=Schema([TensorSpec(np.dtype(np.float32), sample_shape)]),
            targets=Schema([TensorSpec(dataset.labels.dtype, (-1,))]),
        ).to_dict()
    )
    fingerprint = dataset.fingerprint()
    records = []
    for context in contexts:
        classes, indices = parts[context]
        class_ids = [int(index) for index in classes]
        digest = hashlib.sha256(f"{fingerprint}|{context}|{class_ids}".encode()).hexdigest()
        profile = {
            "samples": int(indices.size),
            "classes": len(class_ids),
            "class_ids": class_ids,
            "class_names": [dataset.class_names[index] for index in class_ids],
            "split": {name: getattr(config, name) for name in SPLIT_FIELDS},
            "dataset_samples": int(dataset.labels.size),
            "dataset_classes": dataset.num_classes,
            "dataset_sha256": fingerprint,
        }
        records.append(
            DatasetRecord(
                name=dataset_name(dataset, config),
                digest=digest[:DIGEST_CHARS],
                source_type=source_type,
                source=source,
                schema=schema,
                profile=json.dumps(profile),
                context=context,
            )
        )
    return tuple(records)


def dataset_name(dataset: Samples, config: DatasetConfig) -> str:
    """The source's name, and the file or folder of one read from disk: ``cub (image_folder)``."""
    if config.path:
        return f"{Path(config.path).expanduser().resolve().name} ({dataset.name})"
    return dataset.name


def dataset_source(config: DatasetConfig) -> tuple[str, str]:
    """(source type, source JSON): the file a dataset was read from, or what generated it."""
    if config.path:
        # What MLflow's LocalArtifactDatasetSource writes (a class MLflow makes at import time,
        # so not importable by name).
        return LOCAL_SOURCE, json.dumps({"uri": str(Path(config.path).expanduser().resolve())})
    fields = GENERATOR_FIELDS.get(config.name)
    if fields is None:  # an added source: every field but the split's and the memory bound
        excluded = {*SPLIT_FIELDS, "name", "path", "max_bytes"}
        fields = tuple(name for name in asdict(config) if name not in excluded)
    tags = {"generator": f"margin-tune {config.name}"}
    tags.update({name: str(getattr(config, name)) for name in fields})
    code = CodeDatasetSource(tags)
    return code._get_source_type(), code.to_json()
