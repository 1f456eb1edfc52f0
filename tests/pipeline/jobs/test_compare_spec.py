"""``compare.yaml``: the default comparison, presets, a user's file and every bad spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from margin_tune.pipeline.jobs.compare.spec import (
    DEFAULT_METHODS,
    PRESETS,
    CompareSpec,
    load_compare_spec,
    parse_compare_spec,
)
from margin_tune.pipeline.search.space import load_space
from margin_tune.search_spaces import packaged_spaces
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import load_config

OWN_SPACE = """\
metric: val_map_at_r
mode: max
parameters:
  margin.scheduler: {distribution: fixed, value: pi}
  margin.kp: {distribution: log_uniform, low: 0.1, high: 1.0}
"""


def parse(data: dict[str, Any], tmp_path: Path, overrides: list[str] | None = None) -> CompareSpec:
    return parse_compare_spec(data, overrides or [], relative_to=tmp_path)


def error_of(data: dict[str, Any], tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(data, tmp_path)
    return caught.value


# --- the default and the presets ------------------------------------------------------------


def test_default_spec_compares_the_paper_methods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_compare_spec(None, None, [])
    assert spec.methods == ["dams", "two_sided", "constant", "linear"]
    assert spec.baselines == ("constant", "linear")
    assert spec.schedulers == ["dams", "two_sided"]
    assert spec.metric == "val_map_at_r"
    assert (spec.trials, spec.searcher, spec.seeds) == (16, "tpe", 10)
    assert spec.base == load_config()
    assert spec.overrides == ()
    for name, space in spec.spaces.items():
        assert space.source == packaged_spaces()[DEFAULT_METHODS[name]]
        assert space.fixed["margin.scheduler"] == name


def test_default_spec_is_not_shadowed_by_directories_named_like_methods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in DEFAULT_METHODS:
        (tmp_path / name).mkdir()  # e.g. output folders of earlier sweeps
    monkeypatch.chdir(tmp_path)
    spec = load_compare_spec(None, None, [])
    assert spec.methods == list(DEFAULT_METHODS)
    assert all(space.source == packaged_spaces()[name] for name, space in spec.spaces.items())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_load(preset: str) -> None:
    spec = load_compare_spec(None, preset, [])
    budget = PRESETS[preset]["budget"]
    assert spec.trials == budget["trials"]
    assert spec.base.train.epochs == budget["epochs"]
    assert spec.seeds == PRESETS[preset]["seeds"]
    assert spec.searcher == PRESETS[preset]["searcher"]
    assert spec.methods == list(DEFAULT_METHODS)
    assert spec.baselines == ("constant", "linear")


def test_quick_preset_shrinks_the_dataset() -> None:
    spec = load_compare_spec(None, "quick", [])
    assert spec.base.dataset.samples_per_class == 30
    assert (spec.trials, spec.seeds, spec.base.train.epochs) == (4, 3, 8)


def test_file_keys_win_over_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "compare.yaml"
    path.write_text("seeds: 5\nsearcher: random\n")
    spec = load_compare_spec(path, "paper", [])
    assert (spec.seeds, spec.searcher) == (5, "random")
    assert (spec.trials, spec.base.train.epochs) == (50, 30)


def test_command_line_overrides_come_last(tmp_path: Path) -> None:
    spec = load_compare_spec(None, "quick", ["train.epochs=5", "train.lr=0.002"])
    assert spec.base.train.epochs == 5
    assert spec.base.train.lr == 0.002
    assert spec.overrides[-2:] == ("train.epochs=5", "train.lr=0.002")


# --- a user's compare.yaml -------------------------------------------------------------------


def test_user_file_with_relative_base_and_space(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "small.yaml").write_text(
        "dataset:\n  num_classes: 40\ntrain:\n  epochs: 50\n  lr: 0.003\n"
    )
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "pi_kp.yaml").write_text(OWN_SPACE)
    path = tmp_path / "compare.yaml"
    path.write_text(
        "base: configs/small.yaml\n"
        "set: [model.embedding_dim=32]\n"
        "methods:\n"
        "  mine: spaces/pi_kp.yaml\n"
        "  constant: constant\n"
        "baselines: [constant]\n"
        "budget: {trials: 6, epochs: 7}\n"
        "searcher: qmc\n"
        "seeds: 4\n"
        "split_seed: 3\n"
    )
    spec = load_compare_spec(path, None, [])
    assert spec.methods == ["mine", "constant"]
    assert spec.spaces["mine"].source == tmp_path / "spaces" / "pi_kp.yaml"
    assert spec.spaces["mine"].fixed == {"margin.scheduler": "pi"}
    assert spec.spaces["constant"].source == packaged_spaces()["constant"]
    assert spec.baselines == ("constant",)
    assert spec.schedulers == ["mine"]
    assert (spec.trials, spec.searcher, spec.seeds) == (6, "qmc", 4)
    # The base file, then `set`, then the budget's epochs and the split seed.
    assert spec.base.dataset.num_classes == 40
    assert spec.base.train.lr == 0.003
    assert spec.base.model.embedding_dim == 32
    assert spec.base.train.epochs == 7
    assert spec.base.dataset.split_seed == 3
    assert spec.overrides == ("model.embedding_dim=32", "train.epochs=7", "dataset.split_seed=3")


def test_the_relative_paths_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pi_kp.yaml").write_text(OWN_SPACE)
    (project / "compare.yaml").write_text("methods: {mine: pi_kp.yaml, linear: linear}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_compare_spec(Path("../project/compare.yaml"), None, [])
    assert spec.spaces["mine"].fixed == {"margin.scheduler": "pi"}


def test_a_file_beside_compare_yaml_wins_over_a_packaged_name(tmp_path: Path) -> None:
    (tmp_path / "dams").write_text(OWN_SPACE)
    spec = parse({"methods": {"dams": "dams", "constant": "constant"}}, tmp_path)
    assert spec.spaces["dams"].source == tmp_path / "dams"
    assert spec.spaces["dams"].fixed == {"margin.scheduler": "pi"}


def test_budget_epochs_and_split_seed_reach_the_spaces_base(tmp_path: Path) -> None:
    spec = parse({"budget": {"epochs": 3}, "split_seed": 11}, tmp_path)
    assert spec.base.train.epochs == 3
    assert spec.base.dataset.split_seed == 11
    assert spec.trials == 16


def test_baselines_default_to_the_fixed_baseline_schedulers(tmp_path: Path) -> None:
    spec = parse({"methods": {"a": "dams", "b": "linear", "c": "pi"}}, tmp_path)
    assert spec.baselines == ("b",)
    assert spec.schedulers == ["a", "c"]


def test_spaces_are_validated_against_the_compare_base(tmp_path: Path) -> None:
    (tmp_path / "wide.yaml").write_text(
        "parameters:\n  margin.min_margin: {distribution: uniform, low: 0.0, high: 0.3}\n"
    )
    # Valid over the default initial margin 0.2 only up to 0.2: with 0.5 it is fine.
    spec = parse(
        {"set": ["margin.initial_margin=0.5"], "methods": {"w": "wide.yaml", "c": "constant"}},
        tmp_path,
    )
    assert spec.spaces["w"].source == tmp_path / "wide.yaml"
    error = error_of({"methods": {"w": "wide.yaml", "c": "constant"}}, tmp_path)
    assert error.field == "compare.methods.w"
    assert "margin.min_margin" in str(error)


# --- bad specs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        pytest.param({"method": {"a": "dams"}}, "compare.method", ["unknown key"], id="unknown"),
        pytest.param(
            {"methods": {"dams": "dams"}}, "compare.methods", ["at least two"], id="one-method"
        ),
        pytest.param(
            {"methods": ["dams", "constant"]}, "compare.methods", ["at least two"], id="a-list"
        ),
        pytest.param(
            {"methods": {"dams": "dams", "mine": "missing.yaml"}},
            "compare.methods.mine",
            ["file not found", "missing.yaml"],
            id="missing-space-file",
        ),
        pytest.param(
            {"methods": {"dams": "dams", "typo": "dmas"}},
            "compare.methods.typo",
            ["neither a file nor a packaged space", "two_sided"],
            id="unknown-packaged-space",
        ),
        pytest.param(
            {"methods": {"dams": "dams", "constant": "constant"}, "baselines": ["linear"]},
            "compare.baselines",
            ["'linear' is not a method", "dams, constant"],
            id="baseline-not-a-method",
        ),
        pytest.param(
            {"baselines": "constant"}, "compare.baselines", ["list of strings"], id="baseline-str"
        ),
        pytest.param({"seeds": 0}, "compare.seeds", ["must be >= 1", "0"], id="seeds-0"),
        pytest.param({"seeds": True}, "compare.seeds", ["integer"], id="seeds-bool"),
        pytest.param(
            {"budget": {"trials": "ten"}},
            "compare.budget.trials",
            ["must be an integer", "'ten'"],
            id="trials-ten",
        ),
        pytest.param(
            {"budget": {"epochs": 0}}, "compare.budget.epochs", ["must be >= 1"], id="epochs-0"
        ),
        pytest.param(
            {"budget": {"trials": 4, "seeds": 3}},
            "compare.budget",
            ["trials and epochs"],
            id="budget-extra-key",
        ),
        pytest.param({"budget": 16}, "compare.budget", ["mapping"], id="budget-not-a-mapping"),
        pytest.param({"split_seed": 1.5}, "compare.split_seed", ["integer"], id="split-seed"),
        pytest.param(
            {"set": "train.epochs=3"}, "compare.set", ["list of strings"], id="set-not-a-list"
        ),
        pytest.param({"set": [3]}, "compare.set", ["list of strings"], id="set-of-ints"),
        pytest.param({"set": ["train.epoch=3"]}, "train.epoch", ["unknown key"], id="set-bad"),
        pytest.param({"base": 3}, "compare.base", ["path or null"], id="base-not-a-path"),
        pytest.param(
            {"base": "nowhere.yaml"}, "--config", ["file not found", "nowhere.yaml"], id="no-base"
        ),
        pytest.param(
            {"searcher": "bayes"},
            "compare.searcher",
            ["'bayes'", "qmc", "random", "tpe"],
            id="unknown-searcher",
        ),
        pytest.param({"searcher": 1}, "compare.searcher", ["1"], id="searcher-not-a-string"),
        pytest.param(
            {"methods": {"dams": "dams", "pbt": {"population": {}}}},
            "compare.methods.pbt",
            ["must name a search space", "space, population"],
            id="method-without-space",
        ),
        pytest.param(
            {"methods": {"dams": "dams", "pbt": {"space": "dams", "pop": {}}}},
            "compare.methods.pbt.pop",
            ["unknown key", "space, population"],
            id="method-unknown-key",
        ),
        pytest.param(
            {"methods": {"dams": "dams", "pbt": {"space": "dams", "population": {"size": 8}}}},
            "compare.methods.pbt.population",
            ["perturbation_interval"],
            id="population-unknown-key",
        ),
        pytest.param(
            {
                "methods": {
                    "dams": "dams",
                    "pbt": {"space": "dams", "population": {"perturbation_interval": 12}},
                },
                "budget": {"epochs": 12},
            },
            "compare.methods.pbt.population.perturbation_interval",
            ["between 1 and train.epochs - 1 (11)", "12"],
            id="population-interval-too-long",
        ),
    ],
)
def test_bad_specs_fail_naming_the_field(
    tmp_path: Path, data: dict[str, Any], field: str, words: list[str]
) -> None:
    error = error_of(data, tmp_path)
    assert error.field == field
    for word in words:
        assert word in str(error)


def test_missing_space_file_is_reported_beside_compare_yaml(tmp_path: Path) -> None:
    error = error_of({"methods": {"dams": "dams", "mine": "spaces/mine.yaml"}}, tmp_path)
    assert str(tmp_path / "spaces" / "mine.yaml") in str(error)


def test_spaces_optimising_different_metrics_are_refused(tmp_path: Path) -> None:
    (tmp_path / "eer.yaml").write_text(
        "metric: val_eer\nmode: min\nparameters:\n"
        "  train.lr: {distribution: log_uniform, low: 0.0001, high: 0.01}\n"
    )
    error = error_of({"methods": {"dams": "dams", "eer": "eer.yaml"}}, tmp_path)
    assert error.field == "compare.methods.eer"
    assert "primary metric is val_map_at_r" in str(error) and "val_eer (min)" in str(error)
    # The same file is fine when the comparison declares val_eer and every method tunes it.
    spec = parse({"metric": "val_eer", "methods": {"a": "eer.yaml", "b": "eer.yaml"}}, tmp_path)
    assert (spec.metric, spec.mode, spec.primary) == ("val_eer", "min", "eer")


def test_a_bad_space_is_reported_under_its_method(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "parameters:\n  margin.target_easy_ratio: {distribution: uniform, low: 0.7, high: 1.3}\n"
    )
    error = error_of({"methods": {"dams": "dams", "bad": "bad.yaml"}}, tmp_path)
    assert error.field == "compare.methods.bad"
    assert "margin.target_easy_ratio" in str(error)
    assert "1.3" in str(error)


def test_bad_preset_name_lists_the_presets() -> None:
    with pytest.raises(ConfigError) as caught:
        load_compare_spec(None, "fast", [])
    assert caught.value.field == "--preset"
    assert "'fast'" in str(caught.value)
    for name in PRESETS:
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("- dams\n- constant\n", ["must hold a mapping"], id="a-list"),
        pytest.param("methods: {dams: dams\n", ["invalid YAML"], id="syntax"),
        pytest.param("seeds: !!python/object/apply:os.getpid []\n", ["invalid YAML"], id="tag"),
    ],
)
def test_bad_compare_files(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "compare.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_compare_spec(path, None, [])
    assert caught.value.field == "--config"
    for word in words:
        assert word in str(caught.value)


def test_missing_compare_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_compare_spec(tmp_path / "compare.yaml", None, [])
    assert caught.value.field == "--config"
    assert "file not found" in str(caught.value)


def test_the_spaces_are_the_ones_load_space_gives(tmp_path: Path) -> None:
    spec = parse({"budget": {"epochs": 4}}, tmp_path)
    for name, space in spec.spaces.items():
        assert space == load_space(DEFAULT_METHODS[name], spec.base)


def test_a_population_method_keeps_its_space_and_interval_through_the_manifest(
    tmp_path: Path,
) -> None:
    from margin_tune.pipeline.jobs.compare.spec import SPACES_DIR, spec_data, spec_from_data

    spec = parse(
        {
            "methods": {
                "dams": "dams",
                "pbt": {"space": "dams", "population": {"perturbation_interval": 3}},
                "plain": {"space": "dams"},
                "constant": "constant",
            },
            "budget": {"trials": 4, "epochs": 6},
        },
        tmp_path,
    )
    assert spec.populations == {"pbt": 3}
    assert spec.spaces["pbt"] == spec.spaces["dams"] == spec.spaces["plain"]
    # A population method is a scheduler, compared against the baselines like the others.
    assert spec.schedulers == ["dams", "pbt", "plain"] and spec.baselines == ("constant",)
    # The default interval when the mapping names none.
    default = parse(
        {"methods": {"a": "dams", "b": {"space": "dams", "population": None}}}, tmp_path
    )
    assert default.populations == {"b": 2}
    spaces = tmp_path / SPACES_DIR
    spaces.mkdir()
    for method, space in spec.spaces.items():
        assert space.source is not None
        (spaces / f"{method}.yaml").write_text(space.source.read_text())
    assert spec_from_data(spec_data(spec), spaces).populations == {"pbt": 3}
    # A manifest written before populations existed reads as none.
    old = {k: v for k, v in spec_data(spec).items() if k != "populations"}
    assert spec_from_data(old, spaces).populations == {}


def test_a_population_over_a_space_that_searches_nothing_it_perturbs_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "own.yaml").write_text(OWN_SPACE)
    error = error_of(
        {"methods": {"dams": "dams", "pbt": {"space": "own.yaml", "population": {}}}}, tmp_path
    )
    assert error.field == "compare.methods.pbt.population"
    assert "searches none of margin.target_easy_ratio, margin.step_size, train.lr" in str(error)
