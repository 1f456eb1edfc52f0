"""Dataset inputs: what each run trained and was scored on, as MLflow records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from margin_tune.pipeline.sweep.inputs import (
    SCORED_CONTEXTS,
    TUNING_CONTEXTS,
    DatasetInputs,
    dataset_records,
    split_key,
)
from margin_tune.trainables.config import Config, DatasetConfig
from margin_tune.trainables.data import Dataset, load_dataset, split_classes

CONFIG = DatasetConfig(num_classes=30, samples_per_class=5, dim=4)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset(CONFIG)


def test_each_part_lists_its_classes_and_the_parts_partition_the_classes(
    dataset: Dataset,
) -> None:
    records = dataset_records(dataset, CONFIG, SCORED_CONTEXTS)
    assert [record.context for record in records] == ["training", "validation", "test"]
    split = split_classes(dataset.labels, CONFIG)
    profiles = [json.loads(record.profile) for record in records]
    for profile, classes, indices in zip(
        profiles,
        (split.train_classes, split.val_classes, split.test_classes),
        (split.train_indices, split.val_indices, split.test_indices),
        strict=True,
    ):
        assert profile["class_ids"] == classes.tolist()
        assert profile["class_names"] == [dataset.class_names[c] for c in classes]
        assert profile["samples"] == indices.size
        assert profile["dataset_sha256"] == dataset.fingerprint()
        assert profile["split"] == {"split_seed": 0, "train_fraction": 0.4, "val_fraction": 0.1}
    ids = [set(profile["class_ids"]) for profile in profiles]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set().union(*ids) == set(range(dataset.num_classes))
    assert len({record.digest for record in records}) == 3
    assert {record.name for record in records} == {"synthetic"}
    source = json.loads(records[0].source)
    assert records[0].source_type == "code"
    assert source["tags"] == {
        "generator": "margin-tune synthetic",
        "num_classes": "30",
        "samples_per_class": "5",
        "dim": "4",
        "noise": "0.35",
    }
    schema = json.loads(records[0].schema)["mlflow_tensorspec"]
    assert json.loads(schema["features"])[0]["tensor-spec"] == {
        "dtype": "float32",
        "shape": [-1, 4],
    }


def test_another_split_or_other_samples_give_other_digests(dataset: Dataset) -> None:
    other_split = DatasetConfig(num_classes=30, samples_per_class=5, dim=4, split_seed=1)
    other_noise = DatasetConfig(num_classes=30, samples_per_class=5, dim=4, noise=0.5)
    inputs = DatasetInputs.build(dataset, [CONFIG, other_split, CONFIG])
    assert set(inputs.records) == {split_key(CONFIG), split_key(other_split)}
    first = inputs.records[split_key(CONFIG)]
    assert [r.context for r in first] == list(TUNING_CONTEXTS)
    second = inputs.records[split_key(other_split)]
    assert not {r.digest for r in first} & {r.digest for r in second}
    noisier = dataset_records(load_dataset(other_noise), other_noise, TUNING_CONTEXTS)
    assert not {r.digest for r in first} & {r.digest for r in noisier}
    # The same data and split give the same digests, in any process: they are content hashes.
    assert dataset_records(load_dataset(CONFIG), CONFIG, TUNING_CONTEXTS) == first


def test_a_run_finds_its_split_and_an_unplanned_split_is_a_bug(dataset: Dataset) -> None:
    inputs = DatasetInputs.build(dataset, [CONFIG])
    config = Config(dataset=CONFIG)
    assert inputs.for_config(config) == inputs.records[split_key(CONFIG)]
    with pytest.raises(KeyError, match="split_seed=7"):
        inputs.for_config(Config(dataset=DatasetConfig(num_classes=30, split_seed=7)))


def test_a_dataset_read_from_disk_is_recorded_by_its_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "faces.npz"
    np.savez(path, X=rng.normal(size=(60, 3)).astype(np.float32), y=np.repeat(np.arange(20), 3))
    config = DatasetConfig(name="npz", path=str(path))
    (record, _) = dataset_records(load_dataset(config), config, TUNING_CONTEXTS)
    assert record.name == "faces.npz (npz)"
    assert record.source_type == "local"
    assert json.loads(record.source) == {"uri": str(path.resolve())}
