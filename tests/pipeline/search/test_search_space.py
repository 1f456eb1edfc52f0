"""Search spaces: the packaged files, the documented format driven through real Optuna studies,
and every bad space failing with a ConfigError that names the spot."""

from __future__ import annotations

import math
import pickle
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

import margin_tune.pipeline.search.space as search_space_module
from margin_tune.pipeline.search.space import (
    DISTRIBUTIONS,
    PROTOCOL_KEYS,
    PROTOCOL_PREFIXES,
    OptunaDefineByRun,
    SearchSpace,
    apply_overrides,
    load_space,
    parse_space,
)
from margin_tune.search_spaces import packaged_spaces
from margin_tune.trainables.config import Config, config_fields
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.metric_names import TUNABLE_METRICS
from margin_tune.trainables.parts import load_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRIALS = 200


@pytest.fixture(scope="module")
def base() -> Config:
    return load_config()


def make_space(base: Config, parameters: Any, **top: Any) -> SearchSpace:
    return parse_space({"parameters": parameters, **top}, base, name="test")


def drive(
    define_by_run: OptunaDefineByRun, trials: int = TRIALS, seed: int = 0
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(suggested params, returned constants) of each trial of a seeded random-sampler study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(trials):
        trial = study.ask()
        constants = define_by_run(trial)
        drawn.append((dict(trial.params), constants))
        study.tell(trial, 0.0)
    return drawn


def values_of(drawn: list[tuple[dict[str, Any], dict[str, Any]]], path: str) -> list[Any]:
    return [params[path] for params, _ in drawn]


def documented_example() -> Mapping[str, Any]:
    """The space in the module docstring, parsed from the docstring itself."""
    doc = search_space_module.__doc__
    assert doc is not None
    block = doc.split("::", 1)[1].split("\n\n")[1]
    data = yaml.safe_load(textwrap.dedent(block))
    assert isinstance(data, dict)
    return data


# --- the packaged spaces --------------------------------------------------------------------


def test_the_methods_of_the_comparison_are_packaged() -> None:
    assert {"dams", "two_sided", "constant", "linear", "pi"} <= set(packaged_spaces())


@pytest.mark.parametrize("name", sorted(packaged_spaces()))
def test_packaged_space_loads_and_every_suggestion_is_a_valid_trial(
    name: str, base: Config
) -> None:
    space = load_space(name, base)
    assert space.name == name
    assert space.source == packaged_spaces()[name]
    assert space.metric in TUNABLE_METRICS
    assert space.mode == "max"
    assert space.description
    # Each packaged space is the method of its name: its loss, sampler or scheduler is fixed to it.
    part = next(p for p in ("loss.name", "sampler.name", "margin.scheduler") if p in space.fixed)
    assert space.fixed[part] == name
    assert space.searched
    for params, constants in drive(space.optuna_space(), trials=25):
        assert set(params) == {p.path for p in space.searched}
        assert constants == space.fixed
        config = apply_overrides(base, {**params, **constants})
        assert config.flat()[part] == name
        flat = config.flat()
        for path, value in params.items():
            assert flat[path] == pytest.approx(value)


def test_loading_by_path_equals_loading_by_name(base: Config) -> None:
    by_name = load_space("dams", base)
    by_path = load_space(packaged_spaces()["dams"], base)
    assert by_path.parameters == by_name.parameters
    assert (by_path.metric, by_path.mode) == (by_name.metric, by_name.mode)


def test_a_directory_named_like_a_packaged_space_does_not_shadow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: Config
) -> None:
    (tmp_path / "dams").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_space("dams", base).source == packaged_spaces()["dams"]


# --- the documented format, driven through Optuna -------------------------------------------


def test_the_documented_example_covers_every_distribution(base: Config) -> None:
    space = parse_space(documented_example(), base, name="doc")
    assert {p.distribution for p in space.parameters} == set(DISTRIBUTIONS)
    assert space.metric == "val_map_at_r"
    assert space.mode == "max"


@pytest.fixture(scope="module")
def documented_draws(base: Config) -> tuple[SearchSpace, list[tuple[dict, dict]]]:
    space = parse_space(documented_example(), base, name="doc")
    return space, drive(space.optuna_space())


def test_uniform_values_lie_in_bounds_and_cover_the_range(documented_draws: Any) -> None:
    _, drawn = documented_draws
    values = values_of(drawn, "margin.target_easy_ratio")
    assert all(isinstance(v, float) and 0.7 <= v <= 0.99 for v in values)
    assert min(values) < 0.72
    assert max(values) > 0.97
    # Uniform: about half the draws fall below the midpoint.
    assert 0.4 < sum(v < 0.845 for v in values) / len(values) < 0.6


def test_log_uniform_values_span_orders_of_magnitude(documented_draws: Any) -> None:
    _, drawn = documented_draws
    values = values_of(drawn, "train.lr")
    assert all(isinstance(v, float) and 1e-4 <= v <= 1e-2 for v in values)
    assert min(values) < 2e-4
    assert max(values) > 5e-3
    # Log-uniform puts half the mass below the geometric midpoint 1e-3; uniform would put 9%.
    assert 0.4 < sum(v < 1e-3 for v in values) / len(values) < 0.6


def test_int_values_respect_bounds_and_step(documented_draws: Any) -> None:
    _, drawn = documented_draws
    values = values_of(drawn, "sampler.classes_per_batch")
    assert all(type(v) is int for v in values)
    assert set(values) == {8, 16, 24, 32}


def test_categorical_values_are_the_choices(documented_draws: Any) -> None:
    _, drawn = documented_draws
    assert set(values_of(drawn, "miner.name")) == {"all", "semihard"}


def test_fixed_values_are_returned_as_constants_not_suggested(documented_draws: Any) -> None:
    space, drawn = documented_draws
    assert space.fixed == {"margin.scheduler": "dams"}
    for params, constants in drawn:
        assert "margin.scheduler" not in params
        assert constants == {"margin.scheduler": "dams"}


def test_every_documented_suggestion_gives_a_valid_config(
    documented_draws: Any, base: Config
) -> None:
    _, drawn = documented_draws
    for params, constants in drawn[:50]:
        config = apply_overrides(base, {**params, **constants})
        assert config.margin.target_easy_ratio == params["margin.target_easy_ratio"]
        assert config.train.lr == params["train.lr"]
        assert config.miner.name == params["miner.name"]
        assert config.sampler.classes_per_batch == params["sampler.classes_per_batch"]
        assert config.margin.scheduler == "dams"
        # Everything the space does not name comes from the base.
        assert config.train.epochs == base.train.epochs
        assert config.model == base.model


def test_int_with_log_scale_spans_orders_of_magnitude(base: Config) -> None:
    path = "sampler.representative_iters"
    space = make_space(base, {path: {"distribution": "int", "low": 1, "high": 1000, "log": True}})
    drawn = drive(space.optuna_space())
    values = values_of(drawn, path)
    assert all(type(v) is int and 1 <= v <= 1000 for v in values)
    assert min(values) < 10
    assert max(values) > 100
    assert 0.35 < sum(v < 32 for v in values) / len(values) < 0.65
    assert apply_overrides(base, drawn[0][0]).sampler.representative_iters == values[0]


def test_int_step_that_does_not_divide_the_range_stays_on_the_grid(base: Config) -> None:
    path = "sampler.representative_iters"
    space = make_space(base, {path: {"distribution": "int", "low": 1, "high": 11, "step": 3}})
    with pytest.warns(UserWarning, match="divisible"):
        values = set(values_of(drive(space.optuna_space(), trials=60), path))
    assert values == {1, 4, 7, 10}


def test_int_on_a_float_field_is_accepted_as_a_float(base: Config) -> None:
    space = make_space(base, {"train.lr": {"distribution": "int", "low": 1, "high": 3}})
    drawn = drive(space.optuna_space(), trials=30)
    assert set(values_of(drawn, "train.lr")) == {1, 2, 3}
    config = apply_overrides(base, drawn[0][0])
    assert isinstance(config.train.lr, float)
    assert config.train.lr == drawn[0][0]["train.lr"]


def test_a_seeded_study_suggests_the_same_sequence(base: Config) -> None:
    space = parse_space(documented_example(), base, name="doc")
    assert drive(space.optuna_space(), 20, seed=3) == drive(space.optuna_space(), 20, seed=3)
    assert drive(space.optuna_space(), 20, seed=3) != drive(space.optuna_space(), 20, seed=4)


def test_define_by_run_pickles_and_still_suggests(base: Config) -> None:
    space = parse_space(documented_example(), base, name="doc")
    original = space.optuna_space()
    clone = pickle.loads(pickle.dumps(original))
    assert isinstance(clone, OptunaDefineByRun)
    assert clone.parameters == original.parameters
    assert clone.fixed == original.fixed
    assert drive(clone, 30) == drive(original, 30)


def test_apply_overrides_rejects_an_invalid_value_naming_the_field(base: Config) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(base, {"margin.target_easy_ratio": 1.3})
    assert caught.value.field == "margin.target_easy_ratio"
    with pytest.raises(ConfigError) as caught:
        apply_overrides(base, {"margin.bogus": 1.0})
    assert caught.value.field == "margin.bogus"


def test_apply_overrides_keeps_the_base(base: Config) -> None:
    small = load_config(overrides=["train.epochs=3", "seed=7"])
    config = apply_overrides(small, {"train.lr": 0.005, "seed": 9})
    assert (config.train.epochs, config.train.lr, config.seed) == (3, 0.005, 9)
    assert (small.train.lr, small.seed) == (base.train.lr, 7)


# --- bad spaces ------------------------------------------------------------------------------

UNIFORM = {"distribution": "uniform", "low": 0.1, "high": 0.3}


def field_of(base: Config, data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_space(data, base, name="bad")
    return caught.value


@pytest.mark.parametrize(
    ("parameters", "field", "words"),
    [
        pytest.param(
            {"margin.bogus": UNIFORM},
            "space.parameters.margin.bogus",
            ["unknown config path", "margin.target_easy_ratio", "train.lr", "miner.name"],
            id="unknown-path",
        ),
        pytest.param(
            {"margin": UNIFORM}, "space.parameters.margin", ["unknown config path"], id="section"
        ),
        pytest.param(
            {"train.lr": {"distribution": "uniform", "low": 0.01, "high": 0.01}},
            "space.parameters.train.lr.high",
            ["empty range"],
            id="empty-range",
        ),
        pytest.param(
            {"train.lr": {"distribution": "uniform", "low": 0.02, "high": 0.01}},
            "space.parameters.train.lr.high",
            ["empty range"],
            id="inverted-range",
        ),
        pytest.param(
            {"margin.initial_margin": {"distribution": "log_uniform", "low": 0.0, "high": 0.5}},
            "space.parameters.margin.initial_margin.low",
            ["log", "low > 0"],
            id="log-low-zero",
        ),
        pytest.param(
            {"margin.min_margin": {"distribution": "log_uniform", "low": -1.0, "high": -0.5}},
            "space.parameters.margin.min_margin.low",
            ["log", "low > 0"],
            id="log-low-negative",
        ),
        pytest.param(
            {
                "sampler.representative_iters": {
                    "distribution": "int",
                    "low": 0,
                    "high": 9,
                    "log": True,
                }
            },
            "space.parameters.sampler.representative_iters.low",
            ["low > 0"],
            id="int-log-low-zero",
        ),
        pytest.param(
            {"train.lr": {"distribution": "normal", "low": 0.001, "high": 0.01}},
            "space.parameters.train.lr.distribution",
            ["'normal'", *DISTRIBUTIONS],
            id="unknown-distribution",
        ),
        pytest.param(
            {"train.lr": {"low": 0.001, "high": 0.01}},
            "space.parameters.train.lr.distribution",
            ["None", *DISTRIBUTIONS],
            id="no-distribution",
        ),
        pytest.param(
            {"train.lr": {"distribution": "uniform", "low": 0.001}},
            "space.parameters.train.lr.high",
            ["required", "uniform"],
            id="missing-key",
        ),
        pytest.param(
            {"margin.scheduler": {"distribution": "fixed"}},
            "space.parameters.margin.scheduler.value",
            ["required", "fixed"],
            id="missing-value",
        ),
        pytest.param(
            {"train.lr": {"distribution": "uniform", "low": 0.001, "high": 0.01, "step": 2}},
            "space.parameters.train.lr.step",
            ["not a key of uniform", "high, low"],
            id="extra-key",
        ),
        pytest.param(
            {"train.lr": 0.01},
            "space.parameters.train.lr",
            ["mapping", "distribution"],
            id="non-mapping-spec",
        ),
        pytest.param(
            {"train.lr": {"distribution": "uniform", "low": "small", "high": 0.01}},
            "space.parameters.train.lr.low",
            ["must be a number", "'small'"],
            id="bound-not-a-number",
        ),
        pytest.param(
            {"train.lr": {"distribution": "uniform", "low": True, "high": 2}},
            "space.parameters.train.lr.low",
            ["must be a number"],
            id="bound-bool",
        ),
        pytest.param(
            {"sampler.classes_per_batch": {"distribution": "int", "low": 4, "high": 16.5}},
            "space.parameters.sampler.classes_per_batch",
            ["integer low, high and step"],
            id="int-float-bound",
        ),
        pytest.param(
            {"sampler.classes_per_batch": {"distribution": "int", "low": 4, "high": 16, "step": 0}},
            "space.parameters.sampler.classes_per_batch.step",
            ["must be >= 1"],
            id="int-step-zero",
        ),
        pytest.param(
            {
                "sampler.representative_iters": {
                    "distribution": "int",
                    "low": 1,
                    "high": 64,
                    "step": 2,
                    "log": True,
                }
            },
            "space.parameters.sampler.representative_iters.step",
            ["1 with log"],
            id="int-log-with-step",
        ),
        pytest.param(
            {
                "sampler.representative_iters": {
                    "distribution": "int",
                    "low": 1,
                    "high": 64,
                    "log": "no",
                }
            },
            "space.parameters.sampler.representative_iters.log",
            ["true or false", "'no'"],
            id="log-not-a-bool",
        ),
        pytest.param(
            {"miner.name": {"distribution": "categorical", "choices": []}},
            "space.parameters.miner.name.choices",
            ["non-empty list"],
            id="categorical-empty",
        ),
        pytest.param(
            {"miner.name": {"distribution": "categorical", "choices": "all"}},
            "space.parameters.miner.name.choices",
            ["non-empty list"],
            id="categorical-not-a-list",
        ),
        pytest.param(
            {"margin.target_easy_ratio": {"distribution": "uniform", "low": 0.7, "high": 1.3}},
            "space.parameters.margin.target_easy_ratio",
            ["1.3", "invalid trial", "(0, 1]"],
            id="target-easy-ratio-above-one",
        ),
        pytest.param(
            {
                "margin.scheduler": {"distribution": "categorical", "choices": ["dams", "sigmoid"]},
                "train.lr": UNIFORM,
            },
            "space.parameters.margin.scheduler",
            ["'sigmoid'", "invalid trial", "two_sided", "constant"],
            id="categorical-bad-scheduler",
        ),
        pytest.param(
            {
                "margin.scheduler": {"distribution": "fixed", "value": "sigmoid"},
                "train.lr": UNIFORM,
            },
            "space.parameters.margin.scheduler",
            ["'sigmoid'", "invalid trial"],
            id="fixed-bad-scheduler",
        ),
        pytest.param(
            {"model.embedding_dim": {"distribution": "uniform", "low": 2, "high": 10}},
            "space.parameters.model.embedding_dim.distribution",
            ["integer", "uniform draws floats", "distribution: int"],
            id="uniform-on-int-field",
        ),
        pytest.param(
            {
                "sampler.representative_iters": {
                    "distribution": "log_uniform",
                    "low": 1,
                    "high": 100,
                }
            },
            "space.parameters.sampler.representative_iters.distribution",
            ["integer", "log_uniform draws floats", "distribution: int"],
            id="log-uniform-on-int-field",
        ),
        pytest.param(
            {"model.embedding_dim": {"distribution": "categorical", "choices": [4, 8.5]}},
            "space.parameters.model.embedding_dim",
            ["8.5", "must be an integer"],
            id="float-choice-on-int-field",
        ),
        pytest.param(
            {"miner.name": {"distribution": "int", "low": 1, "high": 3}},
            "space.parameters.miner.name",
            ["must be a string"],
            id="int-on-string-field",
        ),
        pytest.param(
            {"train.lr": {"distribution": "uniform", "low": 0.0, "high": 0.01}},
            "space.parameters.train.lr",
            ["must be > 0"],
            id="lr-zero",
        ),
        pytest.param(
            {"margin.scheduler": {"distribution": "fixed", "value": "dams"}},
            "space.parameters",
            ["at least one parameter must be searched"],
            id="only-fixed",
        ),
        pytest.param({}, "space.parameters", ["non-empty mapping"], id="empty-parameters"),
        pytest.param(
            ["train.lr"], "space.parameters", ["non-empty mapping"], id="parameters-a-list"
        ),
    ],
)
def test_bad_parameters_fail_naming_the_field(
    base: Config, parameters: Any, field: str, words: list[str]
) -> None:
    error = field_of(base, {"parameters": parameters})
    assert error.field == field
    for word in words:
        assert word in str(error)


def test_optional_int_fields_count_as_integers() -> None:
    # The only ``int | None`` fields are protocol keys a space may not name, so the check that
    # keeps float draws off them is exercised on the annotation itself.
    fields = config_fields()
    assert search_space_module._is_integer(fields["train.batches_per_epoch"])
    assert search_space_module._is_integer(fields["model.embedding_dim"])
    assert not search_space_module._is_integer(fields["margin.max_margin"])
    assert not search_space_module._is_integer(fields["train.lr"])


def test_a_valid_parameter_does_not_hide_a_bad_one(base: Config) -> None:
    error = field_of(
        base,
        {
            "parameters": {
                "train.lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1e-2},
                "margin.target_easy_ratio": {"distribution": "uniform", "low": 0.5, "high": 1.3},
            }
        },
    )
    assert error.field == "space.parameters.margin.target_easy_ratio"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        pytest.param(
            {"metric": "test_roc_auc", "parameters": {"train.lr": UNIFORM}},
            "space.metric",
            ["'test_roc_auc'", *TUNABLE_METRICS],
            id="unknown-metric",
        ),
        pytest.param(
            {"metric": "val_roc_auc", "mode": "maximize", "parameters": {"train.lr": UNIFORM}},
            "space.mode",
            ["'maximize'", "max, min"],
            id="bad-mode",
        ),
        pytest.param(
            {"parameter": {"train.lr": UNIFORM}},
            "space.parameter",
            ["unknown key", "parameters"],
            id="unknown-top-key",
        ),
        pytest.param({"metric": "val_roc_auc"}, "space.parameters", ["non-empty"], id="no-params"),
        pytest.param(["train.lr"], "space", ["mapping", "list"], id="not-a-mapping"),
        pytest.param(None, "space", ["mapping", "NoneType"], id="empty-file"),
    ],
)
def test_bad_space_top_level_fails_naming_the_field(
    base: Config, data: Any, field: str, words: list[str]
) -> None:
    error = field_of(base, data)
    assert error.field == field
    for word in words:
        assert word in str(error)


def test_every_tunable_metric_is_a_validation_metric_and_accepted(base: Config) -> None:
    assert "val_roc_auc" in TUNABLE_METRICS
    for metric in TUNABLE_METRICS:
        assert metric.startswith("val_")
        space = make_space(base, {"train.lr": UNIFORM}, metric=metric, mode="min")
        assert (space.metric, space.mode) == (metric, "min")


def test_defaults_are_val_map_at_r_maximised(base: Config) -> None:
    space = make_space(base, {"train.lr": UNIFORM})
    assert (space.metric, space.mode, space.description) == ("val_map_at_r", "max", "")


def test_every_config_path_may_be_named(base: Config) -> None:
    known = config_fields()
    assert "margin.target_easy_ratio" in known
    assert "train.lr" in known
    assert "margin" not in known


# --- YAML files ------------------------------------------------------------------------------


def test_load_space_reads_a_user_file(tmp_path: Path, base: Config) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "metric: val_eer\nmode: min\nparameters:\n"
        "  margin.scheduler: {distribution: fixed, value: linear}\n"
        "  margin.rate: {distribution: log_uniform, low: 0.001, high: 0.1}\n"
    )
    space = load_space(path, base)
    assert (space.name, space.source, space.metric, space.mode) == ("mine", path, "val_eer", "min")
    assert space.fixed == {"margin.scheduler": "linear"}
    (params, constants), *_ = drive(space.optuna_space(), trials=1)
    assert apply_overrides(base, {**params, **constants}).margin.rate == params["margin.rate"]


def test_load_space_without_base_validates_against_the_defaults() -> None:
    assert load_space("dams").fixed == {"margin.scheduler": "dams"}


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "metric: val_roc_auc\nparameters:\n  train.lr: {distribution: uniform, low: [\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert caught.value.field == "--space"
    assert "invalid YAML" in str(caught.value)
    assert str(path) in str(caught.value)
    assert "line" in str(caught.value)


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"parameters: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert caught.value.field == "--space"
    assert "invalid YAML" in str(caught.value)
    assert not marker.exists()


def test_unknown_packaged_name_lists_the_packaged_spaces() -> None:
    with pytest.raises(ConfigError) as caught:
        load_space("dmas")
    assert caught.value.field == "--space"
    assert "'dmas'" in str(caught.value)
    for name in packaged_spaces():
        assert name in str(caught.value)


def test_missing_yaml_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as caught:
        load_space(missing)
    assert caught.value.field == "--space"
    assert "file not found" in str(caught.value)
    assert str(missing) in str(caught.value)


def test_bad_file_content_names_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text(
        "parameters:\n  margin.target_easy_ratio: {distribution: uniform, low: 0.7, high: 1.3}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert caught.value.field == "space.parameters.margin.target_easy_ratio"


def test_nan_bound_is_an_empty_range(base: Config) -> None:
    error = field_of(
        base, {"parameters": {"train.lr": {"distribution": "uniform", "low": math.nan, "high": 1}}}
    )
    assert error.field == "space.parameters.train.lr.high"


# --- protocol keys ---------------------------------------------------------------------------

#: One key for every protocol prefix and key, with a spec that would be valid if it were allowed.
PROTOCOL_EXAMPLES: dict[str, tuple[dict[str, Any], Any]] = {
    "dataset.split_seed": ({"distribution": "int", "low": 0, "high": 9}, 3),
    "dataset.noise": ({"distribution": "uniform", "low": 0.1, "high": 0.5}, 0.2),
    "dataset.num_classes": ({"distribution": "int", "low": 40, "high": 100}, 50),
    "dataset.name": ({"distribution": "categorical", "choices": ["synthetic"]}, "synthetic"),
    "eval.pair_seed": ({"distribution": "int", "low": 0, "high": 9}, 1),
    "collapse.threshold": ({"distribution": "log_uniform", "low": 0.001, "high": 0.1}, 0.02),
    "collapse.enabled": ({"distribution": "categorical", "choices": [True, False]}, False),
    "seed": ({"distribution": "int", "low": 0, "high": 99}, 7),
    "train.epochs": ({"distribution": "int", "low": 2, "high": 30}, 5),
    "train.batches_per_epoch": ({"distribution": "int", "low": 1, "high": 64, "log": True}, 8),
    "train.device": ({"distribution": "categorical", "choices": ["cpu", "auto"]}, "cpu"),
    "train.num_threads": ({"distribution": "int", "low": 1, "high": 4}, 2),
}


def test_the_examples_cover_every_protocol_prefix_and_key() -> None:
    assert set(PROTOCOL_PREFIXES) == {"dataset.", "eval.", "collapse."}
    assert set(PROTOCOL_KEYS) == {
        "seed",
        "train.epochs",
        "train.batches_per_epoch",
        "train.device",
        "train.num_threads",
    }
    assert set(PROTOCOL_KEYS) <= set(PROTOCOL_EXAMPLES)
    for prefix in PROTOCOL_PREFIXES:
        assert any(path.startswith(prefix) for path in PROTOCOL_EXAMPLES)
    known = config_fields()
    assert set(PROTOCOL_EXAMPLES) <= set(known)
    assert set(PROTOCOL_KEYS) <= set(known)
    for prefix in PROTOCOL_PREFIXES:
        assert any(path.startswith(prefix) for path in known)


def assert_protocol_error(error: ConfigError, path: str) -> None:
    assert error.field == f"space.parameters.{path}"
    message = str(error)
    assert path in message.split(":", 1)[1]  # named in the message, not only the field
    for words in ("data, evaluation, seeds or budget", "same for every method", "base config"):
        assert words in message
    assert f"--set {path}=" in message


@pytest.mark.parametrize("path", sorted(PROTOCOL_EXAMPLES))
@pytest.mark.parametrize("how", ["searched", "fixed"])
def test_a_protocol_key_is_refused_searched_or_fixed(base: Config, path: str, how: str) -> None:
    searched, value = PROTOCOL_EXAMPLES[path]
    spec = searched if how == "searched" else {"distribution": "fixed", "value": value}
    error = field_of(base, {"parameters": {"train.lr": UNIFORM, path: spec}})
    assert_protocol_error(error, path)


@pytest.mark.parametrize("how", ["searched", "fixed"])
def test_every_config_path_of_the_protocol_is_refused(base: Config, how: str) -> None:
    protocol = [
        path
        for path in config_fields()
        if path in PROTOCOL_KEYS or path.startswith(PROTOCOL_PREFIXES)
    ]
    assert len(protocol) > len(PROTOCOL_KEYS)
    for path in protocol:
        value = base.flat()[path]
        spec = (
            {"distribution": "fixed", "value": value}
            if how == "fixed"
            else {"distribution": "categorical", "choices": [value]}
        )
        assert_protocol_error(
            field_of(base, {"parameters": {"train.lr": UNIFORM, path: spec}}), path
        )


@pytest.mark.parametrize("spec", [0.01, None, {"low": 1}, {"distribution": "normal"}])
def test_a_protocol_key_is_refused_before_its_spec_is_read(base: Config, spec: Any) -> None:
    error = field_of(base, {"parameters": {"train.lr": UNIFORM, "seed": spec}})
    assert_protocol_error(error, "seed")


def test_an_unknown_path_under_a_protocol_prefix_is_still_unknown(base: Config) -> None:
    error = field_of(base, {"parameters": {"dataset.bogus": UNIFORM}})
    assert error.field == "space.parameters.dataset.bogus"
    assert "unknown config path" in str(error)


def test_a_protocol_key_is_refused_in_a_file(tmp_path: Path, base: Config) -> None:
    path = tmp_path / "leaky.yaml"
    path.write_text(
        "parameters:\n"
        "  train.lr: {distribution: log_uniform, low: 0.0001, high: 0.01}\n"
        "  dataset.split_seed: {distribution: fixed, value: 3}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_space(path, base)
    assert_protocol_error(caught.value, "dataset.split_seed")


@pytest.mark.parametrize(
    ("path", "searched", "value"),
    [
        ("train.lr", {"distribution": "log_uniform", "low": 1e-4, "high": 1e-2}, 0.003),
        ("sampler.classes_per_batch", {"distribution": "int", "low": 8, "high": 32, "step": 8}, 8),
        ("train.weight_decay", {"distribution": "uniform", "low": 0.0, "high": 0.01}, 0.001),
        ("model.embedding_dim", {"distribution": "categorical", "choices": [32, 64]}, 32),
    ],
)
def test_method_keys_near_the_protocol_remain_allowed(
    base: Config, path: str, searched: dict[str, Any], value: Any
) -> None:
    space = make_space(base, {path: searched})
    assert [p.path for p in space.searched] == [path]
    space = make_space(
        base, {"margin.initial_margin": UNIFORM, path: {"distribution": "fixed", "value": value}}
    )
    assert space.fixed == {path: value}


def test_no_packaged_space_names_a_protocol_key() -> None:
    for name, path in packaged_spaces().items():
        data = yaml.safe_load(path.read_text())
        for key in data["parameters"]:
            assert key not in PROTOCOL_KEYS, (name, key)
            assert not key.startswith(PROTOCOL_PREFIXES), (name, key)


def test_overlay_lays_dotted_values_over_plain_data_and_leaves_it_as_it_was() -> None:
    from margin_tune.pipeline.search.space import apply_overrides, overlay

    base = Config()
    data = base.to_dict()
    before = pickle.dumps(data)
    merged = overlay(data, {"train.lr": 0.01, "margin.scheduler": "linear"})
    assert pickle.dumps(data) == before
    assert merged["train"]["lr"] == 0.01 and merged["margin"]["scheduler"] == "linear"
    assert merged["train"]["epochs"] == data["train"]["epochs"]
    assert apply_overrides(base, {"train.lr": 0.01}).train.lr == 0.01


def test_a_searched_config_is_built_once_per_trial_and_pickles_as_plain_data() -> None:
    """Both of a sweep's callbacks ask for each trial's config; Tune pickles them."""
    from margin_tune.pipeline.sweep.callback import SearchedConfig

    resolve = SearchedConfig(Config())
    first = resolve({"train.lr": 0.01})
    assert resolve({"train.lr": 0.01}) is first
    assert resolve({"train.lr": 0.02}).train.lr == 0.02
    for index in range(SearchedConfig.KEEP + 5):  # bounded: a long sweep keeps the last few
        resolve({"train.lr": 0.001 * (index + 1)})
    assert len(resolve._built) == SearchedConfig.KEEP
    copied = pickle.loads(pickle.dumps(resolve))
    assert copied._built == {} and copied.base == resolve.base
    assert copied({"train.lr": 0.01}) == first
