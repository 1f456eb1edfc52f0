"""Every malformed input is refused the same way: exit 2, one line, nothing created.

Each case runs the real entry point, ``margin_tune.pipeline.cli.main.main``, in a fresh, empty
working
directory,
and checks that the command

* exits with code 2 and prints exactly one line on stderr,
* names the field (dotted config path, flag, ``space.parameters.<path>``, ``compare.<key>``,
  ``dataset.path``) and what is allowed, or the constraint broken,
* leaves nothing behind: no output directory, no ``mlflow.db`` or ``mlruns``, no file anywhere
  under the test's temporary directory or in ``bad_inputs/`` beside this file, no Ray session
  and no ``raylet`` started by this process.

The YAML and JSON inputs are files in ``bad_inputs/`` (listed in its README); binary
datasets (``.npz`` archives, image folders) are generated into the temporary directory.
Tripwires on ``ray.init`` and on ``Trial.run`` turn an input that is wrongly accepted into a
fast failure instead of a real sweep or training run.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
import yaml
from forged_inputs import LAUGHS, forged_png_bytes, npy_bytes
from PIL import Image
from sockets import descendants, process_name

from margin_tune.pipeline.cli.main import main
from margin_tune.trainables.trial import Trial

BAD = Path(__file__).parent / "bad_inputs"
TRIALS = ("--trials", "2")
TRAIN_OUT = ("--out", "{out}")


class TripwireError(AssertionError):
    """Raised where a refused input must never get to: starting Ray or training."""


# --- generated inputs -----------------------------------------------------------------------


class UnpickleTrap:
    """Unpickling this creates ``marker``: proof that an archive was loaded with pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


PICKLE_MARKER = "unpickled-marker"
YAML_MARKER = "pwned-by-yaml"  # what configs/python_tag.yaml would `touch` in the working dir


def _vectors(classes: int, per_class: int = 10, dim: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), per_class)
    return rng.standard_normal((len(y), dim)).astype(np.float32), y


def npz_one_class(data: Path) -> None:
    x, y = _vectors(1, per_class=20)
    np.savez(data / "data.npz", X=x, y=y)


def npz_one_sample_per_class(data: Path) -> None:
    x, y = _vectors(30, per_class=1)
    np.savez(data / "data.npz", X=x, y=y)


def npz_three_classes(data: Path) -> None:
    x, y = _vectors(3)
    np.savez(data / "data.npz", X=x, y=y)


def npz_nan(data: Path) -> None:
    x, y = _vectors(20)
    x[5, 2] = np.nan
    np.savez(data / "data.npz", X=x, y=y)


def npz_length_mismatch(data: Path) -> None:
    x, y = _vectors(20)
    np.savez(data / "data.npz", X=x, y=y[:-1])


def npz_pickled_object(data: Path) -> None:
    _, y = _vectors(20)
    x = np.empty(len(y), dtype=object)
    x[:] = [UnpickleTrap(data / PICKLE_MARKER)] * len(y)
    np.savez(data / "data.npz", X=x, y=y)


def npz_missing_y(data: Path) -> None:
    x, _ = _vectors(20)
    np.savez(data / "data.npz", X=x)


def npz_not_an_archive(data: Path) -> None:
    (data / "data.npz").write_text("X,y\n0.1,0\n", encoding="utf-8")


def _png(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), value).save(path)


def images_no_class_folders(data: Path) -> None:
    images = data / "images"
    _png(images / "loose.png")
    (images / "labels.txt").write_text("loose.png cat\n", encoding="utf-8")


def images_empty_class_folder(data: Path) -> None:
    _png(data / "images" / "cat" / "1.png")
    (data / "images" / "dog").mkdir()
    (data / "images" / "dog" / "notes.txt").write_text("no images here", encoding="utf-8")


def images_one_class(data: Path) -> None:
    for index in range(3):
        _png(data / "images" / "cat" / f"{index}.png", 40 * index)


def images_corrupt_file(data: Path) -> None:
    _png(data / "images" / "cat" / "1.png")
    _png(data / "images" / "dog" / "1.png")
    (data / "images" / "dog" / "2.png").write_bytes(b"not a png at all")


def images_path_is_a_file(data: Path) -> None:
    _png(data / "images.png")


def npz_forged_header(data: Path) -> None:
    """A 10 x 4 ``X`` whose .npy header claims 10**12 rows (16 TB once loaded)."""
    x, y = _vectors(5, per_class=2)
    with zipfile.ZipFile(data / "data.npz", "w") as archive:
        archive.writestr("X.npy", npy_bytes(x, (10**12, 4)))
        archive.writestr("y.npy", npy_bytes(y))


def images_forged_png(data: Path) -> None:
    """Two 8x8 classes, and an 8x8 PNG whose IHDR (CRC fixed) claims 40000 x 40000 pixels."""
    _png(data / "images" / "cat" / "1.png")
    _png(data / "images" / "dog" / "1.png")
    (data / "images" / "dog" / "2.png").write_bytes(forged_png_bytes(40_000, 40_000))


# --- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input and what the one error line must say.

    ``argv`` may use ``{bad}`` (``bad_inputs/``), ``{data}`` (generated inputs), ``{out}`` (an
    output directory in the working directory) and ``{cwd}``. ``field_name`` must appear as
    ``<field>:`` and every ``expect`` string anywhere in the line.
    """

    id: str
    argv: tuple[str, ...]
    field_name: str
    expect: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None
    markers: tuple[str, ...] = ()  # files, relative to the working dir or to {data}, never made
    existing_out: bool = False
    env: dict[str, str] = field(default_factory=dict)


def train(config: str, *rest: str) -> tuple[str, ...]:
    return ("train", "--config", f"{{bad}}/configs/{config}.yaml", *TRAIN_OUT, *rest)


def tune_space(space: str) -> tuple[str, ...]:
    return ("tune", "--space", f"{{bad}}/spaces/{space}.yaml", *TRIALS, *TRAIN_OUT)


def compare(spec: str) -> tuple[str, ...]:
    return ("compare", "--config", f"{{bad}}/compare/{spec}.yaml", *TRAIN_OUT)


def ablate_grid(grid: str, *rest: str) -> tuple[str, ...]:
    return ("ablate", "--grid", f"{{bad}}/grids/{grid}.yaml", *TRAIN_OUT, *rest)


def train_on(name: str, path: str, *rest: str) -> tuple[str, ...]:
    sets = ("--set", f"dataset.name={name}", "--set", f"dataset.path={path}", *rest)
    return ("train", *TRAIN_OUT, *sets)


SCHEDULERS = "constant, dams, linear, pi, replay, two_sided"
MINERS = "all, hard, semihard"
SAMPLERS = "class_representative, pk"
DATASETS = "cars, cub, digits, glyphs, image_folder, lfw, npz, sop, synthetic"
SEARCHERS = "coordinate, nsga2, qmc, random, tpe"
NAME_RULE = "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit"

CASES = [
    # --- trial configs (train --config) ---
    Case(
        "config-unknown_key",
        train("unknown_key"),
        "margin.schedular",
        ("unknown key", "known keys of margin:", "scheduler", "step_size"),
    ),
    Case(
        "config-unknown_section",
        train("unknown_section"),
        "optimiser",
        ("unknown key", "known keys of config:", "dataset", "margin", "train"),
    ),
    Case("config-wrong_type", train("wrong_type"), "train.epochs", ("must be an integer", "'ten'")),
    Case("config-section_not_mapping", train("section_not_mapping"), "margin", ("mapping",)),
    Case(
        "config-target_easy_ratio_1_3",
        train("target_easy_ratio_1_3"),
        "margin.target_easy_ratio",
        ("must be in (0, 1]", "1.3"),
    ),
    Case(
        "config-negative_step_size",
        train("negative_step_size"),
        "margin.step_size",
        (">= 0", "-0.05"),
    ),
    Case("config-nan_value", train("nan_value"), "margin.initial_margin", ("must be finite",)),
    Case(
        "config-unknown_scheduler",
        train("unknown_scheduler"),
        "margin.scheduler",
        ("'cosine'", f"allowed: {SCHEDULERS}"),
    ),
    Case(
        "config-unknown_miner",
        train("unknown_miner"),
        "miner.name",
        ("'hardest'", f"allowed: {MINERS}"),
    ),
    Case(
        "config-unknown_sampler",
        train("unknown_sampler"),
        "sampler.name",
        ("'balanced'", f"allowed: {SAMPLERS}"),
    ),
    Case(
        "config-unknown_dataset",
        train("unknown_dataset"),
        "dataset.name",
        ("'mnist'", f"allowed: {DATASETS}"),
    ),
    Case(
        "config-unknown_optimizer",
        train("unknown_optimizer"),
        "train.optimizer",
        ("'rmsprop'", "allowed: adam, adamw, sgd"),
    ),
    Case(
        "config-missing_dataset_path",
        train("missing_dataset_path"),
        "dataset.path",
        ("is required for dataset 'npz'",),
    ),
    Case(
        "config-nonexistent_dataset_path",
        train("nonexistent_dataset_path"),
        "dataset.path",
        ("no-such-file.npz does not exist",),
    ),
    Case(
        "config-yaml_syntax_error",
        train("yaml_syntax_error"),
        "--config",
        ("invalid YAML", "yaml_syntax_error.yaml", "line"),
    ),
    Case(
        "config-python_tag",
        train("python_tag"),
        "--config",
        ("invalid YAML", "python/object/apply:os.system"),
        markers=(YAML_MARKER,),
    ),
    Case("config-is_a_list", train("is_a_list"), "--config", ("must hold a mapping", "list")),
    Case(
        "config-missing_file",
        ("train", "--config", "{bad}/configs/no_such_config.yaml", *TRAIN_OUT),
        "--config",
        ("file not found", "no_such_config.yaml"),
    ),
    Case(
        "set-unknown_key",
        ("train", *TRAIN_OUT, "--set", "margin.stepsize=0.1"),
        "margin.stepsize",
        ("unknown key", "step_size"),
    ),
    Case(
        "set-without_equals",
        ("train", *TRAIN_OUT, "--set", "margin.step_size"),
        "--set",
        ("expected key=value", "'margin.step_size'"),
    ),
    Case(
        "config-billion_laughs",
        train("billion_laughs"),
        "--config",
        ("invalid YAML", "billion_laughs.yaml", "at line 5", "alias *a is not allowed"),
    ),
    Case(
        "config-duplicate_key",
        train("duplicate_key"),
        "--config",
        ("duplicate_key.yaml at line 6", "duplicate key 'step_size' (first at line 4)"),
    ),
    Case(
        "config-deep_nesting",
        train("deep_nesting"),
        "--config",
        ("deep_nesting.yaml at line 2", "nested deeper than 50 levels"),
    ),
    Case(
        "set-billion_laughs",
        ("train", *TRAIN_OUT, "--set", f"seed={LAUGHS}"),
        "seed",
        ("cannot parse value", "alias *a is not allowed"),
    ),
    Case(
        "set-huge_hidden_dims",
        ("train", *TRAIN_OUT, "--set", "model.hidden_dims=[1000000000]"),
        "model.hidden_dims[0]",
        ("must be <= 65,536", "got 1000000000"),
    ),
    Case(
        "set-huge_num_classes",
        ("train", *TRAIN_OUT, "--set", "dataset.num_classes=1000000000"),
        "dataset.num_classes",
        ("1,000,000,000 classes", "above the limit of", "dataset.max_bytes"),
    ),
    Case(
        "set-huge_image_size",
        ("train", *TRAIN_OUT, "--set", "dataset.image_size=100000"),
        "dataset.image_size",
        ("must be <= 1,024", "got 100000"),
    ),
    Case(
        "set-negative_seed",
        ("train", *TRAIN_OUT, "--set", "seed=-1"),
        "seed",
        ("must be in [0, 4294967295]", "got -1"),
    ),
    Case(
        "set-split_seed_above_2_32",
        ("train", *TRAIN_OUT, "--set", "dataset.split_seed=4294967296"),
        "dataset.split_seed",
        ("must be in [0, 4294967295]", "got 4294967296"),
    ),
    # --- search spaces (tune --space) ---
    Case(
        "space-unknown_key",
        tune_space("unknown_key"),
        "space.metrics",
        ("unknown key", "allowed: description, metric, mode, parameters"),
    ),
    Case(
        "space-unknown_parameter_path",
        tune_space("unknown_parameter_path"),
        "space.parameters.margin.target_easy_ration",
        ("unknown config path", "margin.target_easy_ratio"),
    ),
    Case(
        "space-wrong_type",
        tune_space("wrong_type"),
        "space.parameters.train.lr.low",
        ("must be a number", "'tiny'"),
    ),
    Case(
        "space-target_easy_ratio_1_3",
        tune_space("target_easy_ratio_1_3"),
        "space.parameters.margin.target_easy_ratio",
        ("1.3", "must be in (0, 1]"),
    ),
    Case(
        "space-negative_step_size",
        tune_space("negative_step_size"),
        "space.parameters.margin.step_size",
        ("-0.1", "margin.step_size: must be >= 0"),
    ),
    Case(
        "space-empty_range",
        tune_space("empty_range"),
        "space.parameters.margin.initial_margin.high",
        ("empty range", "must be <"),
    ),
    Case(
        "space-inverted_range",
        tune_space("inverted_range"),
        "space.parameters.margin.initial_margin.high",
        ("low 0.5 must be < high 0.05",),
    ),
    Case(
        "space-log_range_low_zero",
        tune_space("log_range_low_zero"),
        "space.parameters.train.lr.low",
        ("log range needs low > 0", "got 0"),
    ),
    Case(
        "space-unknown_distribution",
        tune_space("unknown_distribution"),
        "space.parameters.train.lr.distribution",
        ("'normal'", "allowed: uniform, log_uniform, int, categorical, fixed"),
    ),
    Case(
        "space-unknown_metric",
        tune_space("unknown_metric"),
        "space.metric",
        ("'val_accuracy'", "allowed:", "val_roc_auc"),
    ),
    Case(
        "space-unknown_mode",
        tune_space("unknown_mode"),
        "space.mode",
        ("'maximise'", "allowed: max, min"),
    ),
    Case(
        "space-unknown_scheduler_choice",
        tune_space("unknown_scheduler_choice"),
        "space.parameters.margin.scheduler",
        ("'cosine'", f"allowed: {SCHEDULERS}"),
    ),
    Case(
        "space-float_distribution_for_int",
        tune_space("float_distribution_for_int"),
        "space.parameters.sampler.classes_per_batch.distribution",
        ("is an integer", "use distribution: int"),
    ),
    Case(
        "space-billion_laughs",
        tune_space("billion_laughs"),
        "--space",
        ("billion_laughs.yaml at line 4", "alias *a is not allowed"),
    ),
    Case(
        "space-yaml_syntax_error",
        tune_space("yaml_syntax_error"),
        "--space",
        ("invalid YAML", "yaml_syntax_error.yaml"),
    ),
    Case("space-is_a_list", tune_space("is_a_list"), "space", ("must be a mapping", "list")),
    Case(
        "space-missing_file",
        ("tune", "--space", "{bad}/spaces/no_such_space.yaml", *TRIALS, *TRAIN_OUT),
        "--space",
        ("file not found",),
    ),
    Case(
        "space-unknown_packaged_name",
        ("tune", "--space", "cosine", *TRIALS, *TRAIN_OUT),
        "--space",
        ("'cosine' is neither a file nor a packaged space", "packaged: ", "dams"),
    ),
    # --- compare specs (compare --config) ---
    Case(
        "compare-unknown_key",
        compare("unknown_key"),
        "compare.method",
        ("unknown key", "allowed: base, baselines, budget, methods"),
    ),
    Case(
        "compare-unknown_searcher",
        compare("unknown_searcher"),
        "compare.searcher",
        ("'grid'", f"allowed: {SEARCHERS}"),
    ),
    Case(
        "compare-unknown_space",
        compare("unknown_space"),
        "compare.methods.cosine",
        ("is neither a file nor a packaged space", "packaged: ", "dams"),
    ),
    Case(
        "compare-one_method",
        compare("one_method"),
        "compare.methods",
        ("at least two",),
    ),
    Case(
        "compare-baseline_not_a_method",
        compare("baseline_not_a_method"),
        "compare.baselines",
        ("'linear' is not a method", "methods: dams, constant"),
    ),
    Case(
        "compare-budget_trials_zero",
        compare("budget_trials_zero"),
        "compare.budget.trials",
        ("must be >= 1", "got 0"),
    ),
    Case(
        "compare-seeds_wrong_type",
        compare("seeds_wrong_type"),
        "compare.seeds",
        ("must be an integer", "'ten'"),
    ),
    Case(
        "compare-bad_override",
        compare("bad_override"),
        "margin.target_easy_ratio",
        ("must be in (0, 1]", "1.3"),
    ),
    Case(
        "compare-missing_dataset_path",
        compare("missing_dataset_path"),
        "dataset.path",
        ("is required for dataset 'npz'",),
    ),
    Case("compare-is_a_list", compare("is_a_list"), "--config", ("must hold a mapping",)),
    Case(
        "compare-billion_laughs",
        compare("billion_laughs"),
        "--config",
        ("billion_laughs.yaml at line 3", "alias *a is not allowed"),
    ),
    # --- ablation grids (ablate --grid) ---
    Case("grid-unknown_key", ablate_grid("unknown_key"), "grid.factor", ("allowed:", "factors")),
    Case(
        "grid-unknown_factor_path",
        ablate_grid("unknown_factor_path"),
        "grid.factors.margin.target_ratio",
        ("unknown config path", "margin.target_easy_ratio"),
    ),
    Case(
        "grid-unnested_scheduler_parameter",
        ablate_grid("unnested_scheduler_parameter"),
        "grid.factors.margin.step_size",
        ("dams, two_sided only", "constant", "nest it under that scheduler"),
    ),
    Case(
        "grid-duplicate_level",
        ablate_grid("duplicate_level"),
        "grid.factors.miner.name",
        ("'all' is listed twice",),
    ),
    Case(
        "grid-invalid_cell",
        ablate_grid("invalid_cell"),
        "grid.factors",
        ("target_easy_ratio=1.3", "must be in (0, 1]"),
    ),
    Case(
        "grid-levels_not_a_list",
        ablate_grid("levels_not_a_list"),
        "grid.factors.miner.name",
        ("must be a list of levels",),
    ),
    Case("grid-seeds_zero", ablate_grid("seeds_zero"), "grid.seeds", ("must be an integer >= 1",)),
    Case(
        "grid-unknown_metric",
        ablate_grid("unknown_metric"),
        "grid.metric",
        ("'test_accuracy'", "test metric", "val_map_at_r"),
    ),
    Case(
        "grid-unknown_packaged_name",
        ("ablate", "--grid", "factorial", *TRAIN_OUT),
        "--grid",
        ("neither a file nor a packaged grid", "schedulers"),
    ),
    Case(
        "grid-huge_grid",
        ablate_grid("huge_grid"),
        "grid.factors",
        ("810,000 cells", "above the limit of 10,000"),
    ),
    Case(
        "grid-huge_seeds",
        ablate_grid("huge_seeds"),
        "grid.seeds",
        ("must be <= 1,000", "got 1000000000000"),
    ),
    Case(
        "grid-missing_file",
        ablate_grid("no_such_grid"),
        "--grid",
        ("no_such_grid.yaml",),
    ),
    # --- command-line arguments ---
    Case(
        "cli-tune_trials_0",
        ("tune", "--space", "dams", "--trials", "0", *TRAIN_OUT),
        "--trials",
        ("must be >= 1", "got 0"),
    ),
    Case(
        "cli-tune_concurrency_0",
        ("tune", "--space", "dams", *TRIALS, "--concurrency", "0", *TRAIN_OUT),
        "--concurrency",
        ("must be >= 1", "got 0"),
    ),
    Case(
        "cli-tune_gpus_per_trial_-1",
        ("tune", "--space", "dams", *TRIALS, "--gpus-per-trial", "-1", *TRAIN_OUT),
        "--gpus-per-trial",
        ("must be a number >= 0", "got -1"),
    ),
    Case(
        "cli-tune_cpus_per_trial_0",
        ("tune", "--space", "dams", *TRIALS, "--cpus-per-trial", "0", *TRAIN_OUT),
        "--cpus-per-trial",
        ("must be a number > 0",),
    ),
    Case(
        "cli-tune_unknown_searcher",
        ("tune", "--space", "dams", *TRIALS, "--searcher", "grid", *TRAIN_OUT),
        "--searcher",
        ("'grid'", f"allowed: {SEARCHERS}"),
    ),
    Case(
        "cli-tune_more_gpus_per_trial_than_any_node",
        ("tune", "--space", "dams", *TRIALS, "--gpus-per-trial", "64", *TRAIN_OUT),
        "--gpus-per-trial",
        ("64 GPU per trial",),
    ),
    Case(
        "cli-tune_reduction_factor_1",
        ("tune", "--space", "dams", *TRIALS, "--reduction-factor", "1", *TRAIN_OUT),
        "--reduction-factor",
        ("must be > 1",),
    ),
    Case(
        "cli-tune_trials_not_a_number",
        ("tune", "--space", "dams", "--trials", "two", *TRAIN_OUT),
        "--trials",
        ("invalid int value", "'two'"),
    ),
    Case(
        "cli-compare_trials_0",
        ("compare", "--preset", "quick", "--trials", "0", *TRAIN_OUT),
        "--trials",
        ("must be >= 1", "got 0"),
    ),
    Case(
        "cli-tune_checkpoint_interval_negative",
        ("tune", "--space", "dams", *TRIALS, "--checkpoint-interval", "-1", *TRAIN_OUT),
        "--checkpoint-interval",
        ("must be a number of seconds >= 0", "got -1"),
    ),
    Case(
        "cli-tune_checkpoint_interval_nan",
        ("tune", "--space", "dams", *TRIALS, "--checkpoint-interval", "nan", *TRAIN_OUT),
        "--checkpoint-interval",
        ("must be a number of seconds >= 0", "got nan"),
    ),
    Case(
        "cli-compare_concurrency_0",
        ("compare", "--preset", "quick", "--concurrency", "0", *TRAIN_OUT),
        "--concurrency",
        ("must be >= 1", "got 0"),
    ),
    Case(
        "cli-train_existing_nonempty_out",
        ("train", *TRAIN_OUT, "--set", "train.epochs=1"),
        "--out",
        ("already exists and is not empty", "choose a new directory"),
        existing_out=True,
    ),
    Case(
        "cli-tune_existing_nonempty_out",
        ("tune", "--space", "dams", *TRIALS, *TRAIN_OUT),
        "--out",
        ("already exists and is not empty", "choose a new directory"),
        existing_out=True,
    ),
    Case(
        "cli-compare_existing_nonempty_out",
        ("compare", "--preset", "quick", *TRAIN_OUT),
        "--out",
        ("already exists and is not empty", "choose a new directory"),
        existing_out=True,
    ),
    Case(
        "cli-resume_not_an_output_dir",
        ("resume", "{bad}/resume/not_an_output_dir"),
        "DIR",
        ("has no margin-tune.json", "not an output directory of margin-tune tune"),
    ),
    Case(
        "cli-resume_missing_dir",
        ("resume", "{cwd}/no_such_sweep"),
        "DIR",
        ("has no margin-tune.json",),
    ),
    Case(
        "cli-resume_manifest_not_json",
        ("resume", "{bad}/resume/manifest_not_json"),
        "DIR",
        ("cannot read", "margin-tune.json"),
    ),
    Case(
        "cli-resume_manifest_wrong_format",
        ("resume", "{bad}/resume/manifest_wrong_format"),
        "DIR",
        ("format 99", "expected 2"),
    ),
    Case(
        "cli-resume_manifest_missing_keys",
        ("resume", "{bad}/resume/manifest_missing_keys"),
        "DIR",
        ("margin-tune.json", "missing"),
    ),
    Case(
        "cli-ablate_seeds_0",
        ("ablate", "--grid", "schedulers", "--seeds", "0", *TRAIN_OUT),
        "--seeds",
        ("must be an integer >= 1", "got 0"),
    ),
    Case(
        "cli-ablate_concurrency_0",
        ("ablate", "--grid", "schedulers", "--concurrency", "0", *TRAIN_OUT),
        "--concurrency",
        ("must be >= 1", "got 0"),
    ),
    Case(
        "cli-resume_ablate_seeds_not_integer",
        ("resume", "{bad}/resume/ablate_seeds_not_integer"),
        "DIR",
        ("'seeds' must be a JSON integer", "str"),
    ),
    Case(
        "cli-resume_manifest_is_a_list",
        ("resume", "{bad}/resume/manifest_is_a_list"),
        "DIR",
        ("margin-tune.json", "object"),
    ),
    Case(
        "cli-report_missing_sqlite_store",
        ("report", "--tracking-uri", "sqlite:///{cwd}/missing.db"),
        "--tracking-uri",
        ("no MLflow database at", "missing.db"),
    ),
    Case(
        "cli-report_default_store_absent",
        ("report",),
        "--tracking-uri",
        ("no MLflow database at", "mlflow.db"),
    ),
    Case(
        "cli-report_env_store_absent",
        ("report",),
        "--tracking-uri",
        ("no MLflow database at", "elsewhere.db"),
        env={"MLFLOW_TRACKING_URI": "sqlite:///elsewhere.db"},
    ),
    Case(
        "cli-report_missing_file_store",
        ("report", "--tracking-uri", "{cwd}/mlruns"),
        "--tracking-uri",
        ("no MLflow file store at", "mlruns"),
    ),
    # --- datasets (generated into {data}) ---
    Case(
        "data-npz_one_class",
        train_on("npz", "{data}/data.npz"),
        "dataset.path",
        ("holds 1 class(es)", "need at least 2"),
        setup=npz_one_class,
    ),
    Case(
        "data-npz_too_few_classes_for_split",
        train_on("npz", "{data}/data.npz"),
        "dataset.train_fraction",
        ("3 classes", "need at least 2"),
        setup=npz_three_classes,
    ),
    Case(
        "data-npz_nan_in_X",
        train_on("npz", "{data}/data.npz"),
        "dataset.path",
        ("X contains 1 NaN/inf values",),
        setup=npz_nan,
    ),
    Case(
        "data-npz_length_mismatch",
        train_on("npz", "{data}/data.npz"),
        "dataset.path",
        ("X has 200 samples but y has 199 labels",),
        setup=npz_length_mismatch,
    ),
    Case(
        "data-npz_pickled_object_array",
        train_on("npz", "{data}/data.npz"),
        "dataset.path",
        ("data.npz", "X holds Python objects", "never unpickled"),
        setup=npz_pickled_object,
        markers=(PICKLE_MARKER,),
    ),
    Case(
        "data-npz_missing_y",
        train_on("npz", "{data}/data.npz"),
        "dataset.path",
        ("has no array y", "found: X", "expected X (samples) and y (labels)"),
        setup=npz_missing_y,
    ),
    Case(
        "data-npz_not_an_archive",
        train_on("npz", "{data}/data.npz"),
        "dataset.path",
        ("cannot read", "not a NumPy .npz archive", "numpy.savez"),
        setup=npz_not_an_archive,
    ),
    Case(
        "data-npz_one_class_via_tune",
        (
            "tune",
            "--space",
            "dams",
            *TRIALS,
            *TRAIN_OUT,
            "--set",
            "dataset.name=npz",
            "--set",
            "dataset.path={data}/data.npz",
        ),
        "dataset.path",
        ("holds 1 class(es)", "need at least 2"),
        setup=npz_one_class,
    ),
    Case(
        "data-image_folder_no_class_folders",
        train_on("image_folder", "{data}/images"),
        "dataset.path",
        ("has no class subfolders",),
        setup=images_no_class_folders,
    ),
    Case(
        "data-image_folder_empty_class_folder",
        train_on("image_folder", "{data}/images"),
        "dataset.path",
        ("dog holds no images", ".png"),
        setup=images_empty_class_folder,
    ),
    Case(
        "data-image_folder_one_class",
        train_on("image_folder", "{data}/images"),
        "dataset.path",
        ("holds 1 class(es)", "need at least 2"),
        setup=images_one_class,
    ),
    Case(
        "data-image_folder_corrupt_image",
        train_on("image_folder", "{data}/images"),
        "dataset.path",
        ("cannot read image", "2.png"),
        setup=images_corrupt_file,
    ),
    Case(
        "data-image_folder_path_is_a_file",
        train_on("image_folder", "{data}/images.png"),
        "dataset.path",
        ("is not a folder of class subfolders",),
        setup=images_path_is_a_file,
    ),
    Case(
        "data-npz_forged_header",
        train_on("npz", "{data}/data.npz"),
        "dataset.path",
        ("X of shape (1000000000000, 4) (float32)", "TiB of memory, above the limit of"),
        setup=npz_forged_header,
    ),
    Case(
        "data-image_folder_forged_png",
        train_on("image_folder", "{data}/images"),
        "dataset.path",
        ("2.png has 1,600,000,000 pixels", "above the limit of 50,000,000 pixels"),
        setup=images_forged_png,
    ),
    Case(
        "data-npz_one_sample_per_class",
        train_on("npz", "{data}/data.npz", "--set", "sampler.classes_per_batch=4"),
        "dataset.path",
        ("the validation classes of npz", "hold no same-class pair", "at least 2 samples"),
        setup=npz_one_sample_per_class,
    ),
    # --- names that would become paths, stores, devices, read-only places ---
    *[
        Case(
            f"compare-method_{kind}_name",
            compare(f"method_{kind}_name"),
            f"compare.methods.{name}",
            (f"{name!r} is not a usable name", "it becomes a folder name", NAME_RULE),
        )
        for kind, name in (
            ("absolute", "/tmp/margin-tune-escape"),
            ("parent", "../escape"),
            ("nested", "a/b"),
        )
    ],
    Case(
        "space-classes_per_batch_above_training_classes",
        tune_space("classes_per_batch_above_training_classes"),
        "space.parameters.sampler.classes_per_batch",
        ("value 64 cannot run on dataset synthetic", "must be <= the 40 training classes"),
    ),
    Case(
        "cli-tune_experiment_empty",
        ("tune", "--space", "dams", *TRIALS, "--experiment", "", *TRAIN_OUT),
        "--experiment",
        ("'' is not a usable experiment name", "1-256 printable characters"),
    ),
    Case(
        "cli-tune_experiment_too_long",
        ("tune", "--space", "dams", *TRIALS, "--experiment", "x" * 300, *TRAIN_OUT),
        "--experiment",
        ("is not a usable experiment name", "1-256 printable characters"),
    ),
    Case(
        "cli-tune_tracking_uri_unknown_scheme",
        ("tune", "--space", "dams", *TRIALS, "--tracking-uri", "foo://x", *TRAIN_OUT),
        "--tracking-uri",
        ("unknown store scheme in 'foo://x'", "allowed: sqlite,"),
    ),
    Case(
        "cli-tune_tracking_uri_sqlite_folder_missing",
        (
            *("tune", "--space", "dams", *TRIALS, *TRAIN_OUT),
            "--tracking-uri",
            "sqlite:///{cwd}/nope/m.db",
        ),
        "--tracking-uri",
        ("nope does not exist",),
    ),
    Case(
        "cli-tune_tracking_uri_http_unreachable",
        ("tune", "--space", "dams", *TRIALS, "--tracking-uri", "http://127.0.0.1:9", *TRAIN_OUT),
        "--tracking-uri",
        ("no MLflow server answers at http://127.0.0.1:9 within 5 s",),
    ),
    Case(
        "cli-tune_cpus_per_trial_nan",
        ("tune", "--space", "dams", *TRIALS, "--cpus-per-trial", "nan", *TRAIN_OUT),
        "--cpus-per-trial",
        ("must be a number > 0", "got nan"),
    ),
    Case(
        "cli-tune_gpus_per_trial_nan",
        ("tune", "--space", "dams", *TRIALS, "--gpus-per-trial", "nan", *TRAIN_OUT),
        "--gpus-per-trial",
        ("must be a number >= 0", "got nan"),
    ),
    Case(
        "set-negative_pair_seed",
        ("train", *TRAIN_OUT, "--set", "eval.pair_seed=-1"),
        "eval.pair_seed",
        ("must be in [0, 4294967295]", "got -1"),
    ),
    *(
        [
            Case(
                f"cli-{command}_device_cuda_without_gpu",
                (command, *extra, *TRAIN_OUT, "--set", "train.device=cuda"),
                "train.device",
                ("cuda, but this machine has no CUDA device", "allowed here: auto, cpu"),
            )
            for command, extra in (("train", ()), ("tune", ("--space", "dams", *TRIALS)))
        ]
        if not torch.cuda.is_available()
        else []
    ),
    *(
        [
            Case(
                f"cli-{command}_out_on_read_only_file_system",
                (command, *extra, "--out", "/sys/margin-tune-out"),
                "--out",
                ("cannot create /sys/margin-tune-out",),
            )
            for command, extra in (("train", ()), ("tune", ("--space", "dams", *TRIALS)))
        ]
        if Path("/sys/kernel").is_dir()
        else []
    ),
]


# --- the check ------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for a folder)."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def _ray_descendants() -> list[str]:
    """Ray processes (raylet, gcs_server) started below this process."""
    below = descendants(os.getpid()) - {os.getpid()}
    names = {pid: process_name(pid) for pid in below}
    return [
        f"{name} (pid {pid})"
        for pid, name in sorted(names.items())
        if "raylet" in name or "gcs_server" in name
    ]


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    def ray_init(*args: object, **kwargs: object) -> None:
        raise TripwireError("ray.init was called: the input was accepted and a Ray session started")

    def trial_run(*args: object, **kwargs: object) -> None:
        raise TripwireError("Trial.run was called: the input was accepted and training started")

    monkeypatch.setattr(ray, "init", ray_init)
    monkeypatch.setattr(Trial, "run", trial_run)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
@pytest.mark.usefixtures("tripwires")
def test_bad_input_exits_2_with_one_line_and_creates_nothing(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    data.mkdir()
    if case.setup is not None:
        case.setup(data)
    out = cwd / "out"
    if case.existing_out:
        out.mkdir()
        (out / "notes.txt").write_text("mine", encoding="utf-8")
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    argv = [arg.format(bad=BAD, data=data, out=out, cwd=cwd) for arg in case.argv]
    before, bad_before = _tree(tmp_path), _tree(BAD)
    ray_before = ray.is_initialized()  # only a session this case started counts against it
    monkeypatch.chdir(cwd)

    problems: list[str] = []
    try:
        code: object = main(argv)
    except SystemExit as error:  # argparse
        code = error.code
    except TripwireError as error:
        code = None
        problems.append(str(error))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()

    if code != 2:
        problems.append(f"exit code {code!r}, expected 2")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, expected 1:\n{err}")
    line = lines[-1] if lines else ""
    if f"{case.field_name}:" not in line:
        problems.append(f"the line does not name {case.field_name!r}: {line!r}")
    missing = [text for text in case.expect if text not in line]
    if missing:
        problems.append(f"the line lacks {missing}: {line!r}")
    created = sorted(set(_tree(tmp_path)) - set(before))
    if created:
        problems.append(f"created {created}")
    if _tree(tmp_path) != before:
        problems.append("changed files under the working or data directory")
    if _tree(BAD) != bad_before:
        problems.append("changed files under tests/pipeline/cli/bad_inputs")
    for marker in case.markers:
        for where in (cwd, data):
            if (where / marker).exists():
                problems.append(f"{where / marker} exists: the input was executed")
    if ray.is_initialized() and not ray_before:
        problems.append("a Ray session is initialised")
        ray.shutdown()
    raylets = _ray_descendants()
    if raylets:
        problems.append(f"Ray processes started: {raylets}")
    assert not problems, "\n".join(problems)


def test_corpus_is_large_and_every_file_is_used() -> None:
    """At least 25 inputs, and no file in tests/pipeline/cli/bad_inputs that no case exercises."""
    assert len(CASES) >= 25
    used = " ".join(" ".join(case.argv) for case in CASES)
    files = [
        path
        for path in BAD.rglob("*")
        if path.is_file() and path.name != "README.md" and path.parent.parent != BAD / "resume"
    ]
    folders = [path for path in (BAD / "resume").iterdir() if path.is_dir()]
    unused = [
        str(path.relative_to(BAD))
        for path in files + folders
        if "{bad}/" + str(path.relative_to(BAD)) not in used
    ]
    assert not unused, f"files in tests/pipeline/cli/bad_inputs no case uses: {unused}"
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    undocumented = [case.id for case in CASES if f"`{case.id}`" not in readme]
    assert not undocumented, (
        f"cases missing from tests/pipeline/cli/bad_inputs/README.md: {undocumented}"
    )


# --- the traps are armed: without the safe loaders, the markers would appear ----------------


def test_pickle_trap_would_fire_if_the_archive_were_unpickled(tmp_path: Path) -> None:
    npz_pickled_object(tmp_path)
    with np.load(tmp_path / "data.npz", allow_pickle=True) as archive:
        archive["X"]
    assert (tmp_path / PICKLE_MARKER).exists()
    pickle.loads(pickle.dumps(UnpickleTrap(tmp_path / "again")))
    assert (tmp_path / "again").exists()


def test_yaml_trap_would_fire_if_the_config_were_loaded_unsafely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    yaml.unsafe_load((BAD / "configs" / "python_tag.yaml").read_text(encoding="utf-8"))
    assert (tmp_path / YAML_MARKER).exists()
