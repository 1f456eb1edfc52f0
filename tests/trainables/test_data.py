"""Contract, determinism and input-validation tests for ``margin_tune.trainables.data``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data import DATASETS, ClassSplit, Dataset, load_dataset, split_classes
from margin_tune.trainables.errors import ConfigError

SMALL = {
    "synthetic": DatasetConfig(name="synthetic", num_classes=12, samples_per_class=5, dim=16),
    "digits": DatasetConfig(name="digits"),
    "glyphs": DatasetConfig(name="glyphs", num_classes=12, samples_per_class=5, image_size=16),
}


def write_npz(path: Path, **arrays: Any) -> str:
    np.savez(path, **arrays)
    return str(path)


def write_image_folder(root: Path, channels: int) -> Path:
    """Classes 'cat', 'cow', 'dog' of 3, 2, 2 random images, in three formats and sizes."""
    rng = np.random.default_rng(0)
    suffixes = (".png", ".bmp", ".gif")
    for name, count in (("dog", 2), ("cat", 3), ("cow", 2)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (10 + index, 14, channels), dtype=np.uint8)
            image = Image.fromarray(pixels if channels == 3 else pixels[..., 0])
            image.save(root / name / f"{index}{suffixes[index]}")
    (root / "dog" / "notes.txt").write_text("not an image, ignored")
    return root


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", channels=3)


def folder_config(path: Path, image_size: int = 8) -> DatasetConfig:
    return DatasetConfig(name="image_folder", path=str(path), image_size=image_size)


def npz_config(path: str | None) -> DatasetConfig:
    return DatasetConfig(name="npz", path=path)


def config_for(name: str, tmp_path: Path) -> DatasetConfig:
    if name == "npz":
        rng = np.random.default_rng(0)
        x = rng.standard_normal((20, 6))
        return npz_config(write_npz(tmp_path / "d.npz", X=x, y=np.arange(20) % 4))
    if name == "image_folder":
        return folder_config(write_image_folder(tmp_path / "images", channels=3))
    return SMALL[name]


def assert_contract(dataset: Dataset) -> None:
    assert dataset.features.dtype == np.float32
    assert dataset.labels.dtype == np.int64
    assert dataset.features.ndim in (2, 4)
    assert dataset.labels.shape == (len(dataset.features),)
    assert np.isfinite(dataset.features).all()
    assert set(np.unique(dataset.labels)) == set(range(len(dataset.class_names)))
    assert dataset.kind == ("image" if dataset.features.ndim == 4 else "vector")


def test_registry_names() -> None:
    assert DATASETS.names() == [
        "cars",
        "cub",
        "digits",
        "glyphs",
        "image_folder",
        "lfw",
        "npz",
        "sop",
        "synthetic",
    ]


#: Benchmarks read lazily in their own layouts: their contract is tested on tiny archives in
#: tests/trainables/data/test_layouts.py.
LAYOUT_SOURCES = {"cars", "cub", "lfw", "sop"}


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if n not in LAYOUT_SOURCES])
def test_every_source_meets_the_contract_and_is_deterministic(name: str, tmp_path: Path) -> None:
    config = config_for(name, tmp_path)
    first, second = load_dataset(config), load_dataset(config)
    assert_contract(first)
    assert first.name == name
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.fingerprint() == second.fingerprint()


def test_synthetic_shape_follows_config() -> None:
    config = SMALL["synthetic"]
    dataset = load_dataset(config)
    assert dataset.features.shape == (12 * 5, 16)
    np.testing.assert_array_equal(np.bincount(dataset.labels), [5] * 12)


def test_synthetic_ignores_split_seed_and_depends_on_noise() -> None:
    config = SMALL["synthetic"]
    base = load_dataset(config)
    assert load_dataset(dataclasses.replace(config, split_seed=7)).fingerprint() == (
        base.fingerprint()
    )
    assert load_dataset(dataclasses.replace(config, noise=0.9)).fingerprint() != (
        base.fingerprint()
    )


def test_synthetic_noise_widens_classes() -> None:
    """``noise`` is the within-class spread: more of it brings classes closer to each other."""

    def within_to_between(noise: float) -> float:
        dataset = load_dataset(dataclasses.replace(SMALL["synthetic"], noise=noise))
        distances = np.linalg.norm(dataset.features[:, None] - dataset.features[None], axis=-1)
        same = dataset.labels[:, None] == dataset.labels[None]
        off_diagonal = ~np.eye(len(same), dtype=bool)
        return float(distances[same & off_diagonal].mean() / distances[~same].mean())

    assert within_to_between(0.0) < within_to_between(0.35) < within_to_between(1.0) < 1.0


def test_digits_is_sklearn_digits_in_unit_range() -> None:
    dataset = load_dataset(SMALL["digits"])
    assert dataset.features.shape == (1797, 64)
    assert dataset.class_names == tuple("0123456789")
    assert dataset.features.min() == 0.0
    assert dataset.features.max() == 1.0


def test_glyphs_shape_classes_and_range() -> None:
    dataset = load_dataset(SMALL["glyphs"])
    assert dataset.features.shape == (12 * 5, 1, 16, 16)
    assert dataset.class_names == tuple("0123456789AB")
    assert dataset.features.min() >= 0.0
    assert dataset.features.max() <= 1.0
    ink = dataset.features.reshape(len(dataset.features), -1).sum(axis=1)
    assert (ink > 0).all(), "every glyph image must show ink"
    assert not np.allclose(dataset.features[0], dataset.features[1]), "samples must vary"


def test_glyphs_caps_classes_at_the_character_set() -> None:
    config = DatasetConfig(name="glyphs", num_classes=200, samples_per_class=2, image_size=8)
    dataset = load_dataset(config)
    assert len(dataset.class_names) == 94
    assert len(set(dataset.class_names)) == 94


def test_fingerprint_tracks_content() -> None:
    labels = np.array([0, 1], dtype=np.int64)
    one = Dataset(np.zeros((2, 3), np.float32), labels, ("a", "b"), "x")
    same = Dataset(np.zeros((2, 3), np.float32), labels.copy(), ("a", "b"), "x")
    other = Dataset(np.ones((2, 3), np.float32), labels, ("a", "b"), "x")
    assert one.fingerprint() == same.fingerprint() != other.fingerprint()
    assert len(one.fingerprint()) == 64


def test_dataset_rejects_broken_contract() -> None:
    with pytest.raises(ValueError, match="float32"):
        Dataset(np.zeros((2, 3)), np.array([0, 1]), ("a", "b"), "x")
    with pytest.raises(ValueError, match="labels must lie"):
        Dataset(np.zeros((2, 3), np.float32), np.array([0, 2]), ("a", "b"), "x")


# --- split -------------------------------------------------------------------------------------


def split_of(num_classes: int, per_class: int = 3, **fields: Any) -> tuple[ClassSplit, np.ndarray]:
    labels = np.repeat(np.arange(num_classes), per_class)
    return split_classes(labels, DatasetConfig(**fields)), labels


def test_split_is_disjoint_covering_and_sized_by_rounding() -> None:
    split, labels = split_of(25, train_fraction=0.45, val_fraction=0.15)
    # round(25 * 0.45) = 11, round(25 * 0.15) = 4, the rest (10) test
    assert (len(split.train_classes), len(split.val_classes), len(split.test_classes)) == (
        11,
        4,
        10,
    )
    classes = np.concatenate([split.train_classes, split.val_classes, split.test_classes])
    np.testing.assert_array_equal(np.sort(classes), np.arange(25))
    indices = np.concatenate([split.train_indices, split.val_indices, split.test_indices])
    np.testing.assert_array_equal(np.sort(indices), np.arange(len(labels)))
    for part_classes, part_indices in (
        (split.train_classes, split.train_indices),
        (split.val_classes, split.val_indices),
        (split.test_classes, split.test_indices),
    ):
        np.testing.assert_array_equal(part_classes, np.sort(part_classes))
        np.testing.assert_array_equal(part_indices, np.sort(part_indices))
        assert set(labels[part_indices]) == set(part_classes)


def test_split_depends_only_on_split_seed() -> None:
    first, _ = split_of(30, split_seed=3)
    again, _ = split_of(30, split_seed=3, noise=0.9, dim=5)
    np.testing.assert_array_equal(first.test_classes, again.test_classes)
    others = [split_of(30, split_seed=seed)[0].test_classes for seed in range(4, 8)]
    assert any(not np.array_equal(first.test_classes, other) for other in others)


def test_split_default_sizes_for_default_synthetic() -> None:
    split, _ = split_of(100)
    assert (len(split.train_classes), len(split.val_classes), len(split.test_classes)) == (
        40,
        10,
        50,
    )


@pytest.mark.parametrize(
    ("num_classes", "fields", "field", "text"),
    [
        (10, {"val_fraction": 0.1}, "dataset.val_fraction", "leaves 1 validation class"),
        (10, {"train_fraction": 0.1}, "dataset.train_fraction", "leaves 1 training class"),
        (
            10,
            {"train_fraction": 0.7, "val_fraction": 0.2},
            "dataset.train_fraction",
            "leave 1 test class",
        ),
    ],
)
def test_split_with_too_few_classes_names_the_fraction(
    num_classes: int, fields: dict[str, Any], field: str, text: str
) -> None:
    with pytest.raises(ConfigError, match=text) as caught:
        split_of(num_classes, **fields)
    assert caught.value.field == field
    assert "need at least 2" in str(caught.value)


# --- npz ---------------------------------------------------------------------------------------


def test_npz_round_trip_with_int_labels(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    y = np.array([7, 3, 7, 3, 9, 9])
    dataset = load_dataset(npz_config(write_npz(tmp_path / "a.npz", X=x, y=y)))
    np.testing.assert_array_equal(dataset.features, x.astype(np.float32))
    np.testing.assert_array_equal(dataset.labels, [1, 0, 1, 0, 2, 2])
    assert dataset.class_names == ("3", "7", "9")
    assert dataset.kind == "vector"


def test_npz_string_labels_and_grayscale_images(tmp_path: Path) -> None:
    x = np.full((4, 5, 5), 255, dtype=np.uint8)
    y = np.array(["zebra", "ant", "zebra", "ant"])
    dataset = load_dataset(npz_config(write_npz(tmp_path / "b.npz", X=x, y=y)))
    assert dataset.features.shape == (4, 1, 5, 5)
    assert dataset.features.max() == 1.0, "uint8 pixels are scaled to [0, 1]"
    np.testing.assert_array_equal(dataset.labels, [1, 0, 1, 0])
    assert dataset.class_names == ("ant", "zebra")
    assert dataset.kind == "image"


def test_npz_keeps_channels_first_images(tmp_path: Path) -> None:
    x = np.zeros((4, 3, 6, 6), dtype=np.float32)
    dataset = load_dataset(npz_config(write_npz(tmp_path / "c.npz", X=x, y=np.array([0, 1] * 2))))
    assert dataset.features.shape == (4, 3, 6, 6)


def assert_path_error(config: DatasetConfig, text: str) -> None:
    with pytest.raises(ConfigError, match=text) as caught:
        load_dataset(config)
    assert caught.value.field == "dataset.path"
    assert "\n" not in str(caught.value)


def test_npz_rejects_nan_and_inf(tmp_path: Path) -> None:
    x = np.ones((4, 3))
    x[0, 0], x[1, 2], x[3, 1] = np.nan, np.inf, -np.inf
    path = write_npz(tmp_path / "nan.npz", X=x, y=np.array([0, 0, 1, 1]))
    assert_path_error(npz_config(path), "X contains 3 NaN/inf values")


def test_npz_rejects_pickled_object_arrays(tmp_path: Path) -> None:
    y = np.array([{"label": 0}, {"label": 1}], dtype=object)
    path = write_npz(tmp_path / "obj.npz", X=np.zeros((2, 2)), y=y)
    assert_path_error(npz_config(path), "cannot load X and y")


def test_npz_rejects_missing_key(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "nokey.npz", X=np.zeros((2, 2)), labels=np.array([0, 1]))
    assert_path_error(npz_config(path), r"has no array y \(found: X, labels\)")


def test_npz_rejects_length_mismatch(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "len.npz", X=np.zeros((3, 2)), y=np.array([0, 1]))
    assert_path_error(npz_config(path), "X has 3 samples but y has 2 labels")


def test_npz_rejects_a_single_class(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "one.npz", X=np.zeros((3, 2)), y=np.zeros(3, dtype=int))
    assert_path_error(npz_config(path), "holds 1 class")


def test_npz_rejects_missing_path_and_non_npz(tmp_path: Path) -> None:
    assert_path_error(npz_config(None), "is required for dataset 'npz'")
    assert_path_error(npz_config(str(tmp_path / "absent.npz")), "does not exist")
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    assert_path_error(npz_config(str(text)), "cannot read .* as .npz")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    assert_path_error(npz_config(str(single)), "single .npy array")


def test_npz_rejects_bad_shapes_and_dtypes(tmp_path: Path) -> None:
    flat = write_npz(tmp_path / "flat.npz", X=np.zeros(4), y=np.array([0, 1, 0, 1]))
    assert_path_error(npz_config(flat), "X must hold")
    floats = write_npz(tmp_path / "fy.npz", X=np.zeros((2, 2)), y=np.array([0.5, 1.5]))
    assert_path_error(npz_config(floats), "y must be a 1-d array of integers or strings")


# --- image folder ------------------------------------------------------------------------------


def test_image_folder_reads_sorted_rgb(image_root: Path) -> None:
    dataset = load_dataset(folder_config(image_root))
    assert dataset.features.shape == (7, 3, 8, 8)
    assert dataset.class_names == ("cat", "cow", "dog")
    np.testing.assert_array_equal(dataset.labels, [0, 0, 0, 1, 1, 2, 2])
    assert 0.0 <= dataset.features.min() <= dataset.features.max() <= 1.0


def test_image_folder_keeps_grayscale_as_one_channel(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "gray", channels=1)
    dataset = load_dataset(folder_config(root, image_size=12))
    assert dataset.features.shape == (7, 1, 12, 12)


def test_image_folder_errors(tmp_path: Path, image_root: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_path_error(folder_config(empty), "has no class subfolders")
    assert_path_error(DatasetConfig(name="image_folder"), "is required for dataset 'image_folder'")
    (image_root / "zebra").mkdir()
    (image_root / "zebra" / "readme.txt").write_text("no images here")
    assert_path_error(folder_config(image_root), "holds no images")
    (image_root / "zebra" / "broken.png").write_bytes(b"not a png")
    assert_path_error(folder_config(image_root), "cannot read image .*broken.png")


def test_unknown_dataset_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="allowed: cars, cub, digits, glyphs") as caught:
        load_dataset(DatasetConfig(name="mnist"))
    assert caught.value.field == "dataset.name"
