"""Config loading: YAML → frozen dataclasses, overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from margin_tune.trainables.config import Config, config_fields, default_config_path
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import config_from_dict, load_config


def test_packaged_default_lists_every_field_with_the_dataclass_defaults() -> None:
    import yaml

    listed = yaml.safe_load(default_config_path().read_text())
    assert load_config() == Config()
    assert set(Config().flat()) == set(config_from_dict(listed).flat())
    assert set(Config().flat()) == set(config_fields())


def test_overrides_are_parsed_as_yaml_values() -> None:
    config = load_config(
        overrides=[
            "margin.target_easy_ratio=0.9",
            "seed=3",
            "model.hidden_dims=[32, 16]",
            "margin.max_margin=null",
            "margin.scheduler=constant",
        ]
    )
    assert config.margin.target_easy_ratio == 0.9
    assert config.seed == 3
    assert config.model.hidden_dims == (32, 16)
    assert config.margin.max_margin is None
    assert config.margin.scheduler == "constant"


@pytest.mark.parametrize(("text", "value"), [("1e-3", 1e-3), ("2E+2", 200.0), (".5e1", 5.0)])
def test_exponent_without_dot_is_a_number(text: str, value: float) -> None:
    """PyYAML (YAML 1.1) reads ``1e-3`` as a string; configs take it as the number meant."""
    assert load_config(overrides=[f"train.lr={text}"]).train.lr == value


def test_int_is_accepted_for_float_and_round_trips(tmp_path: Path) -> None:
    config = load_config(overrides=["train.lr=1"])
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config_from_dict(config.to_dict()) == config


def test_partial_user_file_takes_defaults_for_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("margin:\n  scheduler: linear\n  rate: 0.02\ntrain:\n  epochs: 3\n")
    config = load_config(path)
    assert (config.margin.scheduler, config.margin.rate, config.train.epochs) == ("linear", 0.02, 3)
    assert config.dataset == Config().dataset


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        ("margin.target_easy_ratio=1.3", "margin.target_easy_ratio", "(0, 1]"),
        ("margin.step_size=-0.05", "margin.step_size", ">= 0"),
        ("margin.scheduler=cosine", "margin.scheduler", "allowed: constant, dams, linear"),
        ("miner.name=hardest", "miner.name", "allowed: all, hard, semihard"),
        ("sampler.name=random", "sampler.name", "allowed: class_representative, pk"),
        ("dataset.name=mnist", "dataset.name", "allowed:"),
        ("model.name=resnet", "model.name", "allowed: cnn, mlp"),
        ("loss.reduction=sum", "loss.reduction", "allowed: mean_nonzero, mean"),
        ("train.epochs=ten", "train.epochs", "must be an integer"),
        ("train.epochs=2.5", "train.epochs", "must be an integer"),
        ("train.lr=true", "train.lr", "must be a number"),
        ("train.lr=0", "train.lr", "> 0"),
        ("train.lr=.nan", "train.lr", "finite"),
        ("margin.target=0.9", "margin.target", "known keys of margin"),
        ("epochs=3", "epochs", "known keys of config"),
        ("model.hidden_dims=64", "model.hidden_dims", "must be a list"),
        ("model.hidden_dims=[64, 0]", "model.hidden_dims[1]", ">= 1"),
        ("dataset.val_fraction=0.7", "dataset.val_fraction", "test classes remain"),
        ("train.device=tpu", "train.device", "allowed: auto, cpu, cuda"),
        ("seed.value=1", "seed", "not a section"),
    ],
)
def test_bad_values_name_the_field(override: str, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    assert caught.value.field == field
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("margin: [1, 2\n", "invalid YAML"),
        ("!!python/object/apply:os.system ['true']\n", "invalid YAML"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("margin: 3\n", "must be a mapping"),
    ],
)
def test_bad_files_fail_cleanly(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(path)
    assert fragment in str(caught.value)


def test_missing_file_and_bad_override_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(overrides=["margin.step_size"])
