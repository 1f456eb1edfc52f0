"""``tune --warm-start``: which earlier trials seed a new study, how they enter it, and that a
resumed searcher leaves them be. The real Optuna study and Ray's ``OptunaSearch`` throughout;
the earlier sweep is a ``trials.csv``-shaped table (the end-to-end test runs real sweeps)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from tiny import TINY

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.outputs.manifest import write_manifest
from margin_tune.pipeline.search.budget_search import BudgetOptunaSearch
from margin_tune.pipeline.search.searchers import SearcherRequest, build_searcher
from margin_tune.pipeline.search.space import SearchSpace, load_space, parse_space
from margin_tune.pipeline.search.study import TUNE_TRIAL_ATTR, WARM_START_ATTR, study_storage
from margin_tune.pipeline.sweep.warm_start import (
    EarlierSweep,
    WarmStart,
    load_warm_start,
    seed_trials,
)
from margin_tune.pipeline.tracking.vocabulary import TRIAL_ID_TAG
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import load_config

METRIC = "val_map_at_r"


def dams() -> SearchSpace:
    return load_space("dams", load_config(overrides=list(TINY)))


def constant_sweep(**changes: object) -> EarlierSweep:
    """A finished ``constant`` sweep: searched initial_margin (up to 1.0) and lr."""
    trials = pd.DataFrame(
        [
            # id, status, initial margin, lr, value
            ("a", "completed", 0.30, 1e-3, 0.61),
            ("b", "completed", 0.45, 3e-3, 0.66),
            ("c", "early_stopped", 0.20, 1e-4, 0.40),
            ("d", "completed", 0.80, 2e-3, 0.70),  # μ0 beyond dams' 0.5
            ("e", "failed", 0.10, 5e-3, float("nan")),
            ("f", "completed", 0.05, 1e-4, 0.52),
        ],
        columns=[TRIAL_ID_TAG, "status", "config.margin.initial_margin", "config.train.lr", METRIC],
    )
    trials["config.margin.scheduler"] = "constant"
    fields: dict[str, object] = {
        "label": "sweep s1 (constant)",
        "trials": trials,
        "metric": METRIC,
        "searched": ("margin.initial_margin", "train.lr"),
        "fixed": {"margin.scheduler": "constant"},
    }
    fields.update(changes)
    return EarlierSweep(**fields)  # type: ignore[arg-type]


def test_only_completed_trials_inside_the_new_space_seed_it_on_shared_parameters() -> None:
    warm = seed_trials(constant_sweep(), dams())
    assert warm.shared == ("margin.initial_margin", "train.lr")
    assert warm.unseeded == ("margin.target_easy_ratio", "margin.step_size")
    assert warm.dropped == ()
    assert [seed.source.rsplit(" ", 1)[1] for seed in warm.seeded] == ["a", "b", "f"]
    assert [seed.value for seed in warm.seeded] == [0.61, 0.66, 0.52]
    assert warm.seeded[1].params == {"margin.initial_margin": 0.45, "train.lr": 3e-3}
    assert warm.not_completed == 2 and warm.outside == ("d",)
    assert warm.differing_fixed == ("margin.scheduler: constant → dams",)
    text = "\n".join(warm.lines())
    assert "3 completed trials seed the study" in text and "not counted in --trials" in text
    assert "not seeded (searched here, not there): margin.target_easy_ratio" in text
    assert "1 trials with a value outside this space (d)" in text


def test_a_parameter_searched_there_but_not_here_is_named_as_dropped() -> None:
    earlier = constant_sweep(searched=("margin.initial_margin", "train.lr", "train.weight_decay"))
    earlier.trials["config.train.weight_decay"] = 1e-4
    warm = seed_trials(earlier, dams())
    assert warm.dropped == ("train.weight_decay",)
    assert all(set(seed.params) == set(warm.shared) for seed in warm.seeded)


def test_categorical_and_integer_values_come_back_as_the_new_spaces_choices() -> None:
    space = parse_space(
        {
            "metric": METRIC,
            "parameters": {
                "margin.scheduler": {
                    "distribution": "categorical",
                    "choices": ["constant", "dams"],
                },
                "sampler.representative_iters": {"distribution": "int", "low": 1, "high": 50},
            },
        },
        load_config(overrides=list(TINY)),
        name="mixed",
    )
    # As read back from a CSV: an integer may come back as a float, a choice as text.
    trials = pd.DataFrame(
        {
            TRIAL_ID_TAG: ["x", "y", "z"],
            "status": ["completed"] * 3,
            "config.margin.scheduler": ["dams", "linear", "constant"],
            "config.sampler.representative_iters": [7.0, 3.0, 2.5],
            METRIC: [0.5, 0.6, 0.7],
        }
    )
    searched = ("margin.scheduler", "sampler.representative_iters")
    warm = seed_trials(EarlierSweep("sweep s2", trials, METRIC, searched, {}), space)
    assert [dict(seed.params) for seed in warm.seeded] == [
        {"margin.scheduler": "dams", "sampler.representative_iters": 7}
    ]
    assert isinstance(warm.seeded[0].params["sampler.representative_iters"], int)
    assert warm.outside == ("y", "z")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metric": "val_roc_auc"}, "optimised val_roc_auc, this sweep val_map_at_r"),
        ({"searched": ("model.embedding_dim",)}, "no parameter in common"),
    ],
)
def test_another_metric_or_no_shared_parameter_is_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        seed_trials(constant_sweep(**changes), dams())
    assert raised.value.field == "--warm-start"


def test_a_sweep_without_a_usable_trial_is_refused() -> None:
    earlier = constant_sweep()
    earlier.trials["status"] = "early_stopped"
    with pytest.raises(ConfigError, match="none of its 6 trials completed its epoch budget"):
        seed_trials(earlier, dams())


def test_a_searcher_that_does_not_learn_is_refused_before_anything_is_read() -> None:
    with pytest.raises(ConfigError, match="random does not learn") as raised:
        load_warm_start("/nowhere", dams(), "random", experiment="x", tracking_uri=None)
    assert raised.value.field == "--searcher"


def test_the_warm_start_survives_the_manifest_as_json() -> None:
    warm = seed_trials(constant_sweep(), dams())
    again = WarmStart.from_data(json.loads(json.dumps(warm.to_data())), dams())
    assert again == warm


def _searcher(space: SearchSpace, warm: WarmStart, storage: str | None) -> BudgetOptunaSearch:
    request = SearcherRequest(
        space=space,
        seed=0,
        study_name="study",
        storage=storage,
        epochs=3,
        trials=4,
        seeded=warm.seeded,
    )
    search = build_searcher("tpe", request)
    assert isinstance(search, BudgetOptunaSearch)
    search.set_search_properties(None, None, {})
    return search


def test_seeded_trials_enter_the_study_finished_once_and_resume_leaves_them_be(
    tmp_path: Path,
) -> None:
    space, warm = dams(), seed_trials(constant_sweep(), dams())
    storage = str(tmp_path / "optuna-journal.log")
    search = _searcher(space, warm, storage)
    study = optuna.load_study(study_name="study", storage=study_storage(storage))
    seeded = [t for t in study.trials if WARM_START_ATTR in t.user_attrs]
    assert [t.state for t in seeded] == [TrialState.COMPLETE] * 3
    assert [t.value for t in seeded] == [0.61, 0.66, 0.52]
    assert seeded[0].params == dict(warm.seeded[0].params)
    # The first new trial is the study's fourth, and draws every parameter of the new space.
    config = search.suggest("tune-1")
    assert config is not None
    assert {p.path for p in space.searched} <= set(config)
    study = optuna.load_study(study_name="study", storage=study_storage(storage))
    assert [t.user_attrs.get(TUNE_TRIAL_ATTR) for t in study.trials] == [None] * 3 + ["tune-1"]
    # A second searcher on the same stored study (a command run again) adds nothing.
    _searcher(space, warm, storage)
    study = optuna.load_study(study_name="study", storage=study_storage(storage))
    assert len(study.trials) == 4
    # Resumed from its snapshot: the seeded trials are no orphans, the Tune trial is kept.
    snapshot = tmp_path / "searcher.pkl"
    search.save(str(snapshot))
    restored = pickle.loads(pickle.dumps(search))
    restored.restore(str(snapshot))
    restored.reconcile(known=["tune-1"], rerun=["tune-1"])
    assert restored.orphaned_trials == {}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("/nowhere/sweep", "--warm-start: /nowhere/sweep is not a directory"),
        ("s1", "--warm-start: 's1' is not a directory, and its MLflow store is unreadable"),
    ],
)
def test_a_warm_start_that_names_nothing_exits_2_before_anything_is_written(
    key: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    command = ["tune", "--space", "dams", "--trials", "2", "--out", str(out)]
    command += ["--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", "--warm-start", key]
    assert main(command) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_directory_that_tune_did_not_write_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "elsewhere").mkdir()
    command = ["tune", "--space", "dams", "--trials", "2", "--out", str(tmp_path / "sweep")]
    command += ["--warm-start", str(tmp_path / "elsewhere")]
    assert main(command) == 2
    assert "is not an output directory of margin-tune tune" in capsys.readouterr().err


def _tune_directory(root: Path) -> Path:
    """What ``tune`` leaves: its manifest, its space file and its trials table."""
    directory = root / "constant-sweep"
    directory.mkdir()
    write_manifest(
        directory,
        "tune",
        {"name": "constant", "space_name": "constant", "sweep_id": "s1", "base": {}, "options": {}},
    )
    (directory / "space.yaml").write_text(
        "metric: val_map_at_r\n"
        "parameters:\n"
        "  margin.scheduler: {distribution: fixed, value: constant}\n"
        "  margin.initial_margin: {distribution: uniform, low: 0.05, high: 1.0}\n"
        "  train.lr: {distribution: log_uniform, low: 0.0001, high: 0.01}\n"
    )
    constant_sweep().trials.to_csv(directory / "trials.csv", index=False)
    return directory


def test_a_tune_directory_seeds_as_its_trials_table_says(tmp_path: Path) -> None:
    directory = _tune_directory(tmp_path)
    warm = load_warm_start(str(directory), dams(), "tpe", experiment="x", tracking_uri=None)
    assert warm.source == f"sweep s1 ({directory})"
    assert [seed.value for seed in warm.seeded] == [0.61, 0.66, 0.52]
    assert warm.differing_fixed == ("margin.scheduler: constant → dams",)


def test_enqueued_seeds_are_the_best_few_and_run_first_as_tune_trials(tmp_path: Path) -> None:
    directory = _tune_directory(tmp_path)
    warm = load_warm_start(
        str(directory), dams(), "tpe", experiment="x", tracking_uri=None, mode="enqueue", trials=4
    )
    # TPE's random start-up for 4 trials is 2: the two best earlier trials take its place.
    assert warm.mode == "enqueue" and [seed.value for seed in warm.seeded] == [0.66, 0.61]
    assert "enqueued to run first here, counted in --trials" in warm.lines()[0]
    request = SearcherRequest(
        space=dams(),
        seed=0,
        study_name="study",
        epochs=3,
        trials=4,
        seeded=warm.seeded,
        seed_mode="enqueue",
    )
    search = build_searcher("tpe", request)
    assert isinstance(search, BudgetOptunaSearch)
    search.set_search_properties(None, None, {})
    first, second = search.suggest("tune-1"), search.suggest("tune-2")
    assert first is not None and second is not None
    for config, seed in ((first, warm.seeded[0]), (second, warm.seeded[1])):
        assert {path: config[path] for path in seed.params} == dict(seed.params)
        assert {"margin.target_easy_ratio", "margin.step_size"} <= set(config)  # sampled
    assert search._ot_study is not None
    owners = [
        (t.user_attrs.get(TUNE_TRIAL_ATTR), t.user_attrs.get(WARM_START_ATTR) is not None)
        for t in search._ot_study.trials
    ]
    assert owners == [("tune-1", True), ("tune-2", True)]
    search.reconcile(known=["tune-1", "tune-2"], rerun=[])
    assert search.orphaned_trials == {}
    assert all(t.state == TrialState.RUNNING for t in search._ot_study.trials)


def test_an_unknown_seed_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="--warm-start-mode: unknown value 'copy'"):
        load_warm_start("x", dams(), "tpe", experiment="x", tracking_uri=None, mode="copy")


def test_added_values_from_other_data_are_flagged_and_enqueued_ones_are_not() -> None:
    note = "the earlier sweep ran on other data"
    warm = seed_trials(constant_sweep(fingerprint="aaa"), dams())
    assert warm.source_fingerprint == "aaa"
    assert any(note in line for line in warm.lines("bbb"))
    assert not any(note in line for line in warm.lines("aaa"))
    assert not any(note in line for line in warm.lines(None))
    enqueued = dataclasses.replace(warm, mode="enqueue")
    assert not any(note in line for line in enqueued.lines("bbb"))
