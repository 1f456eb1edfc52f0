"""Recall@K of the benchmarks' tables, against a brute-force count over the full distance matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from margin_tune.trainables import metric_names as names
from margin_tune.trainables.config import Config, EvalConfig
from margin_tune.trainables.data import recall_ks
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metrics.retrieval import retrieval_metrics
from margin_tune.trainables.parts import config_from_dict


def brute_force_recall(embeddings: np.ndarray, labels: np.ndarray, k: int) -> float:
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1)[:, : min(k, len(labels) - 1)]
    answerable = np.array([(labels == label).sum() > 1 for label in labels])
    found = (labels[order] == labels[:, None]).any(axis=1)
    return float(found[answerable].mean())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [7, 1024])
def test_recall_at_k_matches_brute_force(seed: int, chunk: int) -> None:
    rng = np.random.default_rng(seed)
    count = int(rng.integers(20, 90))
    labels = rng.integers(0, int(rng.integers(3, 15)), count)
    labels[0] = labels[1] = 99  # one class with two samples at least; one singleton below
    labels[2] = 100
    embeddings = F.normalize(torch.as_tensor(rng.normal(size=(count, 6))), dim=1).float()
    ks = (1, 2, 4, 8, 10, 100, 1000)
    found = retrieval_metrics(embeddings, torch.as_tensor(labels), chunk, ks)
    for k in ks:
        name = "recall_at_1" if k == 1 else f"recall_at_{k}"
        assert found[name] == pytest.approx(brute_force_recall(embeddings.numpy(), labels, k))
    assert found["recall_at_1000"] == 1.0  # beyond N - 1 every other sample is retrieved
    values = [found[f"recall_at_{k}"] for k in ks]
    assert values == sorted(values)


def test_recall_at_k_defaults_follow_the_benchmark() -> None:
    def config(name: str, recall_at: list[int] | None = None) -> Config:
        data = {"dataset": {"name": name, "path": "/nowhere"}, "eval": {"recall_at": recall_at}}
        return config_from_dict(data) if name == "synthetic" else _unchecked(data)

    assert recall_ks(config("synthetic")) == (1,)
    assert recall_ks(config("cub")) == (1, 2, 4, 8)
    assert recall_ks(config("cars")) == (1, 2, 4, 8)
    assert recall_ks(config("sop")) == (1, 10, 100, 1000)
    assert recall_ks(config("sop", [1, 5])) == (1, 5)
    assert names.epoch_columns((1, 10)) == tuple(
        name
        for name in names.epoch_columns()
        for name in ([name, "val_recall_at_10"] if name == "val_recall_at_1" else [name])
    )
    assert names.metrics_of(names.test_columns((1, 2, 4))) == (
        "roc_auc",
        "eer",
        "tar_at_far_1e-3",
        "recall_at_1",
        "recall_at_2",
        "recall_at_4",
        "map_at_r",
    )


@pytest.mark.parametrize("bad", [[], [0], [4, 2], [2, 2], [200_000]])
def test_bad_recall_at_is_refused_naming_the_field(bad: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"eval\.recall_at: must be increasing whole numbers"):
        EvalConfig(recall_at=tuple(bad))


def _unchecked(data: dict[str, object]) -> Config:
    from margin_tune.trainables.config import build_config

    return build_config(data)
