"""Batch samplers: the P x K structure every sampler keeps, and class-representative batches."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, pdist

from margin_tune.trainables.config import Config, SamplerConfig
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.samplers import SAMPLERS, EpochContext, build_sampler
from margin_tune.trainables.samplers.class_representative import (
    ClassRepresentativeSampler,
    choose_classes,
)
from margin_tune.trainables.trial import EpochReport, train

#: Uneven classes, one smaller than K, so repeats and unequal sizes are exercised.
CLASS_SIZES = (9, 2, 6, 7, 12, 5, 8, 6)
SEED = 7


def uneven_labels() -> np.ndarray:
    labels = np.repeat(np.arange(len(CLASS_SIZES)) * 10, CLASS_SIZES)  # non-contiguous ids
    return np.random.default_rng(0).permutation(labels)


def labelled_positions(labels: np.ndarray, seed: int = 1) -> np.ndarray:
    """A fixed 2-D position per class (by sorted label): where its samples embed."""
    return np.random.default_rng(seed).uniform(0, 10, size=(len(np.unique(labels)), 2))


def embed_by_class(
    labels: np.ndarray, positions: np.ndarray, calls: list[np.ndarray] | None = None
):
    """An embedding function placing every sample of a class at the class's position."""
    _, class_index = np.unique(labels, return_inverse=True)

    def embed(indices: np.ndarray) -> torch.Tensor:
        if calls is not None:
            calls.append(np.asarray(indices))
        return torch.as_tensor(positions[class_index[indices]])

    return embed


def context(epoch: int, labels: np.ndarray, *, rng_seed: int = 0, **kwargs) -> EpochContext:
    embed = kwargs.pop("embed", None) or embed_by_class(labels, labelled_positions(labels))
    return EpochContext(
        epoch=epoch, rng=np.random.default_rng(rng_seed), embed=embed, seed=kwargs.pop("seed", SEED)
    )


def sampler_config(name: str, **changes) -> SamplerConfig:
    # Mining on for class_representative, so the shared tests cover its mined batches too.
    fields = {"name": name, "classes_per_batch": 4, "samples_per_class": 4}
    if name == "class_representative":
        fields["hard_class_fraction"] = 0.5
    return SamplerConfig(**{**fields, **changes})


def class_groups(batch: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The batch as (P, K) indices, checking that each row is one class."""
    groups = batch.reshape(-1, k)
    assert (labels[groups] == labels[groups[:, :1]]).all()
    return groups


# --- every registered sampler ---------------------------------------------------------------


def test_registry_lists_the_samplers() -> None:
    assert SAMPLERS.names() == ["class_representative", "pk"]


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_batch_is_p_distinct_classes_of_k_samples(name: str) -> None:
    labels = uneven_labels()
    sampler = build_sampler(sampler_config(name), labels, num_batches=9)
    for epoch in (1, 2):
        batches = list(sampler.batches(context(epoch, labels, rng_seed=epoch)))
        assert len(batches) == len(sampler) == 9
        for batch in batches:
            assert batch.shape == (16,)
            assert np.issubdtype(batch.dtype, np.integer)
            assert ((batch >= 0) & (batch < len(labels))).all()
            groups = class_groups(batch, labels, 4)
            assert len(set(labels[groups[:, 0]].tolist())) == 4
            for group in groups:  # distinct samples while the class has enough
                size = CLASS_SIZES[labels[group[0]] // 10]
                assert len(set(group.tolist())) == min(4, size)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_same_context_same_batches_and_another_rng_differs(name: str) -> None:
    labels = uneven_labels()
    sampler = build_sampler(sampler_config(name), labels, num_batches=5)
    first = list(sampler.batches(context(3, labels, rng_seed=11)))
    again = list(
        build_sampler(sampler_config(name), labels, 5).batches(context(3, labels, rng_seed=11))
    )
    other = list(sampler.batches(context(3, labels, rng_seed=12)))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_more_classes_per_batch_than_classes_names_the_field(name: str) -> None:
    with pytest.raises(ConfigError, match=r"sampler.classes_per_batch: must be <= the 8 training"):
        build_sampler(sampler_config(name, classes_per_batch=9), uneven_labels())


def test_default_batches_per_epoch_is_samples_over_batch_size() -> None:
    labels = uneven_labels()
    for name in SAMPLERS.names():
        assert len(build_sampler(sampler_config(name), labels)) == len(labels) // 16


# --- class-representative batches -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("representative_iters", 0, ">= 1"),
        ("hard_class_fraction", -0.1, r"in \[0, 1\]"),
        ("hard_class_fraction", 1.5, r"in \[0, 1\]"),
    ],
)
def test_bad_sampler_values_name_the_field(field: str, value: float, allowed: str) -> None:
    with pytest.raises(ConfigError, match=rf"^sampler\.{field}: must be {allowed}, got {value}"):
        load_config(overrides=[f"sampler.{field}={value}"])


def observed_representatives(
    sampler: ClassRepresentativeSampler, labels: np.ndarray, epochs: int, seed: int = SEED
) -> list[dict[int, int]]:
    """Per trial iteration, each class's first sample; every class is in every batch here."""
    observed = []
    for epoch in range(1, epochs + 1):
        for batch in sampler.batches(context(epoch, labels, rng_seed=epoch, seed=seed)):
            groups = class_groups(batch, labels, sampler.config.samples_per_class)
            observed.append({int(labels[g[0]]): int(g[0]) for g in groups})
    return observed


def test_representatives_stay_fixed_for_their_iterations_across_epochs_then_change() -> None:
    # P equals the number of classes, so every batch shows every class's representative.
    # 7 batches per epoch and blocks of 5 iterations: block 1 is epoch 1's batches 5-6 and
    # epoch 2's batches 0-2, so the block crosses an epoch boundary.
    labels = np.repeat(np.arange(5), 40)
    config = SamplerConfig(
        name="class_representative", classes_per_batch=5, samples_per_class=3,
        representative_iters=5,
    )  # fmt: skip
    sampler = build_sampler(config, labels, num_batches=7)
    assert isinstance(sampler, ClassRepresentativeSampler)
    observed = observed_representatives(sampler, labels, epochs=3)
    assert len(observed) == 21
    for iteration, representatives in enumerate(observed):
        block = iteration // 5
        assert representatives == observed[block * 5]
        expected = sampler.representatives(SEED, block)
        assert representatives == {c: int(expected[c]) for c in range(5)}
    blocks = [observed[start] for start in range(0, 21, 5)]
    for before, after in itertools.pairwise(blocks):
        assert before != after
    # The other K-1 samples of a class are not its representative (40 members: no repeats).
    for epoch in (1, 2):
        for batch in sampler.batches(context(epoch, labels, rng_seed=epoch)):
            groups = class_groups(batch, labels, 3)
            assert all(group[0] not in group[1:] for group in groups)
    # Another trial seed draws other representatives.
    assert observed_representatives(sampler, labels, epochs=1, seed=SEED + 1) != observed[:7]


def test_representatives_need_no_state_to_resume_an_epoch() -> None:
    labels = uneven_labels()
    config = sampler_config("class_representative", representative_iters=3)
    straight = build_sampler(config, labels, num_batches=4)
    for _ in straight.batches(context(1, labels, rng_seed=1)):
        pass
    epoch_two = list(straight.batches(context(2, labels, rng_seed=2)))
    fresh = build_sampler(config, labels, num_batches=4)
    resumed = list(fresh.batches(context(2, labels, rng_seed=2)))
    assert all(np.array_equal(a, b) for a, b in zip(epoch_two, resumed, strict=True))


def mined_batches(fraction: float, calls: list[np.ndarray] | None = None) -> list[np.ndarray]:
    labels = np.repeat(np.arange(20), 6)
    config = SamplerConfig(
        name="class_representative", classes_per_batch=4, samples_per_class=3,
        representative_iters=4, hard_class_fraction=fraction,
    )  # fmt: skip
    sampler = build_sampler(config, labels, num_batches=10)
    embed = embed_by_class(labels, labelled_positions(labels), calls)
    return [
        np.unique(labels[batch])
        for batch in sampler.batches(context(1, labels, rng_seed=3, embed=embed))
    ]


def test_mined_batches_hold_a_class_and_its_nearest_classes() -> None:
    labels = np.repeat(np.arange(20), 6)
    positions = labelled_positions(labels)
    distance = cdist(positions, positions)
    calls: list[np.ndarray] = []
    mined = mined_batches(1.0, calls)
    for classes in mined:
        neighbourhoods = [set(np.argsort(distance[c])[:4].tolist()) for c in classes]
        assert set(classes.tolist()) in neighbourhoods
    random = mined_batches(0.0)
    spread_mined = np.mean([pdist(positions[c]).mean() for c in mined])
    spread_random = np.mean([pdist(positions[c]).mean() for c in random])
    assert spread_mined < 0.6 * spread_random
    # One pass over one representative per class, per block of 4 iterations (10 batches: 3).
    assert len(calls) == 3
    for call in calls:
        assert sorted(labels[call].tolist()) == list(range(20))


def test_half_mined_batches_pair_a_seed_class_with_its_nearest() -> None:
    labels = np.repeat(np.arange(20), 6)
    positions = labelled_positions(labels)
    distance = cdist(positions, positions)
    np.fill_diagonal(distance, np.inf)
    batches = mined_batches(0.5)  # 2 of 4 classes mined
    assert len(batches) == 10
    for classes in batches:
        nearest = {int(np.argmin(distance[c])) for c in classes}
        assert nearest & set(classes.tolist())


def test_no_mining_draws_classes_uniformly_and_never_embeds() -> None:
    def refuse(indices: np.ndarray) -> torch.Tensor:
        raise AssertionError("a sampler without mining must not run the network")

    labels = uneven_labels()
    for fraction in (0.0, 0.2):  # 0.2 x 4 rounds to 1 class: no mining
        config = sampler_config("class_representative", hard_class_fraction=fraction)
        batches = list(build_sampler(config, labels, 3).batches(context(1, labels, embed=refuse)))
        assert len(batches) == 3
    for seed in range(5):
        drawn = choose_classes(20, 4, 0, None, np.random.default_rng(seed))
        assert np.array_equal(drawn, np.random.default_rng(seed).choice(20, 4, replace=False))


def test_choose_classes_puts_the_mined_group_first() -> None:
    embeddings = np.arange(10, dtype=float)[:, None] ** 1.5  # distinct gaps: no ties
    for seed in range(10):
        chosen = choose_classes(10, 5, 3, embeddings, np.random.default_rng(seed))
        assert len(set(chosen.tolist())) == 5
        seed_class = chosen[0]
        gaps = np.abs(embeddings[:, 0] - embeddings[seed_class, 0])
        assert set(chosen[:3].tolist()) == set(np.argsort(gaps, kind="stable")[:3].tolist())


# --- a trial with class-representative batches ----------------------------------------------


def test_trial_with_mined_representative_batches_resumes_exactly(tiny_config: Config) -> None:
    # 240 training samples in batches of 24: 10 iterations an epoch; blocks of 4 cross epochs.
    config = replace(
        tiny_config,
        sampler=replace(
            tiny_config.sampler,
            name="class_representative",
            representative_iters=4,
            hard_class_fraction=0.5,
        ),
        train=replace(tiny_config.train, epochs=3),
    )
    reference = train(config).history
    saved: dict[str, dict] = {}

    def stop_after_one(report: EpochReport) -> bool:
        saved["state"] = report.checkpoint()
        return True

    assert train(config, stop_after_one).stop_reason == "stopped"
    resumed = train(config, checkpoint=saved["state"]).history

    def comparable(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]

    assert len(resumed) == 3
    assert comparable(resumed) == comparable(reference)
    pk = train(replace(config, sampler=tiny_config.sampler)).history
    assert [row["train_loss"] for row in pk] != [row["train_loss"] for row in reference]
