"""Inputs whose cost is set by the input: refused at the edge, quickly, naming field and limit.

YAML that expands (aliases), repeats a key, nests without end or is too long; sizes declared by a
header (``.npz`` arrays, PNG images) or by a value (model widths, generated datasets, grids,
seeds). Each size case is timed: a refusal must come in well under a second, so the 2 s bound
below only guards against a hang or an allocation, it is not a benchmark.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from forged_inputs import LAUGHS, forged_png_bytes, npy_bytes
from PIL import Image

from margin_tune.pipeline.jobs.ablate.grid import MAX_CELLS, MAX_SEEDS, parse_grid
from margin_tune.pipeline.jobs.compare.spec import load_compare_spec
from margin_tune.pipeline.search.space import load_space
from margin_tune.trainables.config import (
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MAX_WIDTH,
    Config,
    DatasetConfig,
    ModelConfig,
)
from margin_tune.trainables.data import limits as data_limits, load_dataset
from margin_tune.trainables.data.image_folder import MAX_IMAGE_PIXELS
from margin_tune.trainables.errors import MAX_MESSAGE, MAX_QUOTED, ConfigError, quote, shorten
from margin_tune.trainables.models import build_model
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.yaml_io import MAX_DEPTH, MAX_YAML_CHARS

BAD = Path(__file__).parent / "bad_inputs"
QUICK_S = 2.0  # generous: every refusal below takes milliseconds


@contextmanager
def quickly() -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    assert elapsed < QUICK_S, f"took {elapsed:.2f} s"


def refused(action: Callable[[], object]) -> ConfigError:
    """The ConfigError ``action`` raises, within :data:`QUICK_S`, its message bounded."""
    with quickly(), pytest.raises(ConfigError) as caught:
        action()
    assert len(str(caught.value)) <= MAX_MESSAGE
    return caught.value


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- YAML: aliases ----------------------------------------------------------------------------


def test_billion_laughs_in_a_config_file_is_refused_at_the_alias(tmp_path: Path) -> None:
    path = write(tmp_path / "laughs.yaml", f"seed: {LAUGHS}\n")
    assert path.stat().st_size < 400
    error = refused(lambda: load_config(path))
    assert error.field == "--config"
    assert "alias *a is not allowed" in str(error) and "line 1" in str(error)
    # Documented choice: only aliases expand, so an anchor nothing refers to is accepted.
    assert load_config(write(tmp_path / "anchor.yaml", "seed: &s 3\n")).seed == 3


def test_the_corpus_billion_laughs_config_is_refused() -> None:
    error = refused(lambda: load_config(BAD / "configs" / "billion_laughs.yaml"))
    assert error.field == "--config"
    assert "alias *a is not allowed" in str(error) and "at line 5" in str(error)


def test_billion_laughs_in_a_set_value_names_the_key() -> None:
    error = refused(lambda: load_config(overrides=[f"model.hidden_dims={LAUGHS}"]))
    assert error.field == "model.hidden_dims"
    assert "cannot parse value" in str(error) and "alias *a is not allowed" in str(error)


def test_billion_laughs_in_a_space_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "space.yaml",
        "metric: val_map_at_r\nparameters:\n"
        f"  margin.scheduler: {{distribution: categorical, choices: {LAUGHS}}}\n",
    )
    error = refused(lambda: load_space(path))
    assert error.field == "--space"
    assert "alias *a is not allowed" in str(error) and "line 3" in str(error)


def test_billion_laughs_in_a_compare_spec(tmp_path: Path) -> None:
    path = write(
        tmp_path / "compare.yaml", f"methods: {{dams: dams, linear: linear}}\nset: {LAUGHS}\n"
    )
    error = refused(lambda: load_compare_spec(path, None, []))
    assert error.field == "--config"
    assert "alias *a is not allowed" in str(error) and "line 2" in str(error)


# --- YAML: duplicate keys, depth, length, tags ------------------------------------------------


def test_duplicate_top_level_key_names_key_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "seed: 1\ntrain:\n  epochs: 2\nseed: 2\n")
    error = refused(lambda: load_config(path))
    assert error.field == "--config"
    assert "duplicate key 'seed' (first at line 1)" in str(error) and "at line 4" in str(error)


def test_duplicate_nested_key_names_key_and_lines() -> None:
    error = refused(lambda: load_config(BAD / "configs" / "duplicate_key.yaml"))
    assert error.field == "--config"
    assert "duplicate key 'step_size' (first at line 4)" in str(error)
    assert "at line 6" in str(error)


def test_duplicate_key_in_a_set_value_names_the_key() -> None:
    error = refused(lambda: load_config(overrides=["margin={kp: 0.1, kp: 0.2}"]))
    assert error.field == "margin"
    assert "duplicate key 'kp'" in str(error)


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    depth = 5000
    path = write(tmp_path / "c.yaml", "seed: " + "[" * depth + "]" * depth + "\n")
    error = refused(lambda: load_config(path))
    assert error.field == "--config"
    assert f"nested deeper than {MAX_DEPTH} levels" in str(error)


def test_an_overlong_yaml_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "# " + "x" * (4 * MAX_YAML_CHARS) + "\n")
    error = refused(lambda: load_config(path))
    assert error.field == "--config"
    assert f"{MAX_YAML_CHARS:,} characters" in str(error)


def test_an_integer_too_long_to_convert_is_a_config_error(tmp_path: Path) -> None:
    error = refused(lambda: load_config(write(tmp_path / "c.yaml", "seed: 1" + "0" * 5000 + "\n")))
    assert error.field == "--config"
    assert "digits" in str(error) and "set_int_max_str_digits" not in str(error)


def test_python_tags_stay_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(
        tmp_path / "c.yaml", f"margin: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    error = refused(lambda: load_config(path))
    assert error.field == "--config"
    assert "python/object/apply:os.system" in str(error)
    assert not marker.exists()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n", "null\n"])
def test_an_empty_config_file_means_all_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path / "c.yaml", text)) == Config()


# --- messages quoting user input are bounded --------------------------------------------------


def test_config_error_caps_its_message_and_keeps_it_on_one_line() -> None:
    error = ConfigError("k" * 5000, "line one\nline two " + "v" * 10_000)
    text = str(error)
    assert len(text) <= MAX_MESSAGE and text.endswith("…")
    assert "\n" not in text
    assert text.startswith("k" * (MAX_QUOTED - 1) + "…: line one line two")
    assert error.field == "k" * 5000


def test_quote_caps_a_value_and_survives_huge_integers() -> None:
    assert len(quote("x" * 10_000)) == MAX_QUOTED and quote("x" * 10_000).endswith("…")
    assert quote(10**5000) == "<an integer of 16,610 bits>"
    assert shorten("short") == "short"


def test_a_long_unknown_key_gives_a_bounded_message() -> None:
    error = refused(lambda: load_config(overrides=[f"{'k' * 50_000}=1"]))
    assert error.field == "k" * 50_000
    assert str(error).startswith("k" * (MAX_QUOTED - 1) + "…: unknown key")


def test_a_long_set_value_is_quoted_shortened() -> None:
    error = refused(lambda: load_config(overrides=[f"seed=[{', '.join(['1'] * 10_000)}"]))
    assert error.field == "seed"
    assert "cannot parse value '[1, 1" in str(error) and "…" in str(error)
    assert len(str(error)) < 2 * MAX_QUOTED + 200


# --- npz: the array header declares the size --------------------------------------------------


def forged_npz(path: Path, rows: int) -> Path:
    x = np.zeros((10, 4), dtype=np.float32)
    y = np.arange(10) % 2
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", npy_bytes(x, (rows, 4)))
        archive.writestr("y.npy", npy_bytes(y))
    return path


def npz_config(path: Path, **changes: Any) -> DatasetConfig:
    return DatasetConfig(name="npz", path=str(path), **changes)


def test_npz_whose_header_claims_10_to_12_rows_is_refused_before_reading(tmp_path: Path) -> None:
    path = forged_npz(tmp_path / "forged.npz", rows=10**12)
    assert path.stat().st_size < 2000
    error = refused(lambda: load_dataset(npz_config(path)))
    assert error.field == "dataset.path"
    message = str(error)
    assert "X of shape (1000000000000, 4) (float32)" in message
    assert "TiB of memory, above the limit of" in message
    assert "dataset.max_bytes" in message
    # The forged archive is well formed but for the shape: at its true size it loads.
    dataset = load_dataset(npz_config(forged_npz(tmp_path / "true.npz", rows=10)))
    assert dataset.features.shape == (10, 4)


def test_dataset_max_bytes_bounds_a_real_npz_and_can_be_raised(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((1000, 64), dtype=np.float32), y=np.arange(1000) % 10)
    error = refused(lambda: load_dataset(npz_config(path, max_bytes=100_000)))
    assert error.field == "dataset.path"
    assert "above the limit of 97.7 KiB (dataset.max_bytes; raise it" in str(error)
    assert load_dataset(npz_config(path, max_bytes=1_000_000)).features.shape == (1000, 64)


def test_the_machine_memory_bounds_datasets_below_max_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data_limits, "physical_memory", lambda: 1 << 20)
    error = refused(lambda: load_dataset(DatasetConfig()))
    assert "above the limit of 1.0 MiB (this machine's physical memory" in str(error)


# --- image folders: the PNG header declares the size ------------------------------------------


def forged_png(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(forged_png_bytes(width, height))
    return path


def image_folder(root: Path, forged: tuple[int, int] | None = None) -> DatasetConfig:
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(2):
            Image.new("L", (8, 8), 40 * index).save(root / name / f"{index}.png")
    if forged is not None:
        forged_png(root / "dog" / "2.png", *forged)
    return DatasetConfig(name="image_folder", path=str(root), image_size=8)


def test_png_claiming_40000_x_40000_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = image_folder(tmp_path / "images", forged=(40_000, 40_000))
    error = refused(lambda: load_dataset(config))
    assert error.field == "dataset.path"
    message = str(error)
    assert "dog/2.png has 1,600,000,000 pixels" in message
    assert f"above the limit of {MAX_IMAGE_PIXELS:,} pixels" in message


def test_png_between_our_bound_and_pils_is_refused_by_its_header_size(tmp_path: Path) -> None:
    config = image_folder(tmp_path / "images", forged=(8000, 8000))
    error = refused(lambda: load_dataset(config))
    assert error.field == "dataset.path"
    assert "dog/2.png is 8000 x 8000 = 64,000,000 pixels, above the limit" in str(error)


def test_image_folder_count_times_image_size_is_bounded(tmp_path: Path) -> None:
    config = image_folder(tmp_path / "images")
    small = DatasetConfig(name="image_folder", path=config.path, image_size=8, max_bytes=1000)
    error = refused(lambda: load_dataset(small))
    assert error.field == "dataset.path"
    assert "4 images at dataset.image_size 8 needs about" in str(error)
    assert load_dataset(config).features.shape == (4, 1, 8, 8)


def test_image_size_is_bounded() -> None:
    error = refused(lambda: load_config(overrides=["dataset.image_size=100000"]))
    assert error.field == "dataset.image_size"
    assert f"must be <= {MAX_IMAGE_SIZE:,}, got 100000" in str(error)


# --- generated datasets -----------------------------------------------------------------------


def test_synthetic_with_a_billion_classes_is_refused_before_drawing() -> None:
    error = refused(lambda: load_dataset(DatasetConfig(num_classes=10**9)))
    assert error.field == "dataset.num_classes"
    assert "1,000,000,000 classes x 40 samples of 64 features needs about" in str(error)


def test_synthetic_with_huge_samples_per_class_names_that_field() -> None:
    error = refused(lambda: load_dataset(DatasetConfig(samples_per_class=10**9)))
    assert error.field == "dataset.samples_per_class"


def test_glyphs_with_huge_samples_per_class_is_refused() -> None:
    config = DatasetConfig(name="glyphs", samples_per_class=10**7)
    error = refused(lambda: load_dataset(config))
    assert error.field == "dataset.samples_per_class"
    assert "94 classes x 10,000,000 samples of 32 x 32 pixels" in str(error)


def test_dataset_max_bytes_bounds_generated_data_and_must_be_positive() -> None:
    error = refused(lambda: load_dataset(DatasetConfig(max_bytes=1000)))
    assert "dataset.max_bytes" in str(error)
    assert refused(lambda: DatasetConfig(max_bytes=0)).field == "dataset.max_bytes"


# --- model sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.hidden_dims=[1000000000]", "model.hidden_dims[0]"),
        ("model.embedding_dim=1000000000", "model.embedding_dim"),
    ],
)
def test_a_huge_width_is_refused(override: str, field: str) -> None:
    error = refused(lambda: load_config(overrides=[override]))
    assert error.field == field
    assert f"must be <= {MAX_WIDTH:,}, got 1000000000" in str(error)


def test_wide_consecutive_layers_exceed_max_parameters() -> None:
    error = refused(lambda: ModelConfig(hidden_dims=(65_536, 65_536)))
    assert error.field == "model.hidden_dims"
    assert "at least 4,299,161,600 parameters, above model.max_parameters" in str(error)
    assert ModelConfig(hidden_dims=(65_536, 65_536), max_parameters=5 * 10**9).hidden_dims


def test_many_hidden_layers_are_refused() -> None:
    assert refused(lambda: ModelConfig(hidden_dims=(4,) * 100)).field == "model.hidden_dims"


def test_the_input_layer_counts_when_the_model_is_built() -> None:
    config = ModelConfig(hidden_dims=(4096,))
    error = refused(lambda: build_model(config, (3, 1024, 1024)))
    assert error.field == "model.hidden_dims"
    # 3 * 1024 * 1024 inputs x 4096 + 4096 biases, then 4096 x 64 + 64
    assert "has 12,885,168,192 parameters" in str(error)
    assert "raise model.max_parameters" in str(error)
    conv = ModelConfig(name="cnn", hidden_dims=(4096, 4096), max_parameters=10**8)
    assert "above model.max_parameters" in str(refused(lambda: build_model(conv, (3, 32, 32))))


def test_a_cnn_deeper_than_the_image_allows_is_refused() -> None:
    config = ModelConfig(name="cnn", hidden_dims=(8,) * 6)
    error = refused(lambda: build_model(config, (1, 32, 32)))
    assert error.field == "model.hidden_dims"
    assert "6 blocks need images of at least 64 pixels a side" in str(error)


# --- grids ------------------------------------------------------------------------------------

GRID_30_4 = {
    "metric": "val_map_at_r",
    "factors": {
        "train.lr": [round(0.001 * (index + 1), 4) for index in range(30)],
        "train.weight_decay": [round(0.0001 * index, 5) for index in range(30)],
        "margin.initial_margin": [round(0.01 * (index + 1), 3) for index in range(30)],
        "train.epochs": list(range(1, 31)),
    },
}


def test_a_30_to_the_4_grid_is_refused_before_its_cells_are_built() -> None:
    error = refused(lambda: parse_grid(GRID_30_4, Config(), name="huge"))
    assert error.field == "grid.factors"
    assert f"810,000 cells, above the limit of {MAX_CELLS:,}" in str(error)


def test_a_factor_with_more_levels_than_cells_allowed_is_refused() -> None:
    data = {"factors": {"train.epochs": list(range(1, 2 * MAX_CELLS))}}
    error = refused(lambda: parse_grid(data, Config(), name="long"))
    assert error.field == "grid.factors.train.epochs"


@pytest.mark.parametrize(
    ("seeds_in_file", "seeds_flag", "field"),
    [(10**12, None, "grid.seeds"), (3, 10**12, "--seeds"), (MAX_SEEDS + 1, None, "grid.seeds")],
)
def test_huge_grid_seeds_are_refused(
    seeds_in_file: int, seeds_flag: int | None, field: str
) -> None:
    data = {"seeds": seeds_in_file, "factors": {"miner.name": ["all", "semihard"]}}
    error = refused(lambda: parse_grid(data, Config(), name="g", seeds=seeds_flag))
    assert error.field == field
    assert f"must be <= {MAX_SEEDS:,}" in str(error)


# --- integer seeds ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["seed", "dataset.split_seed", "eval.pair_seed"])
@pytest.mark.parametrize("value", [-1, MAX_SEED + 1, 10**30])
def test_seeds_outside_numpy_and_torch_range_are_refused(field: str, value: int) -> None:
    error = refused(lambda: load_config(overrides=[f"{field}={value}"]))
    assert error.field == field
    assert f"must be in [0, {MAX_SEED}]" in str(error) and str(value) in str(error)
    assert load_config(overrides=[f"{field}={MAX_SEED}"]).flat()[field] == MAX_SEED
