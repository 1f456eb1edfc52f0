"""``margin.scheduler: replay`` with ``train.lr_schedule``: a learned schedule, replayed in a
plain trial, read from the ``schedule.csv`` a population sweep writes, and its bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import TINY

from margin_tune.trainables import metric_names as names
from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import config_from_dict, load_config
from margin_tune.trainables.trial import Trial, train

MARGINS = (0.15, 0.3, 0.45)
RATES = (3e-3, 1e-3, 2e-4)


def replay(*overrides: str) -> Config:
    return load_config(
        None,
        [
            *TINY,
            "margin.scheduler=replay",
            f"margin.schedule={list(MARGINS)}",
            f"train.lr_schedule={list(RATES)}",
            *overrides,
        ],
    )


def test_each_epoch_trains_at_the_schedules_margin_and_learning_rate() -> None:
    history = train(replay()).history
    assert [row[names.MARGIN] for row in history] == pytest.approx(list(MARGINS))
    assert [row[names.LEARNING_RATE] for row in history] == pytest.approx(list(RATES))


def test_without_a_learning_rate_schedule_every_epoch_trains_at_train_lr() -> None:
    history = train(replay("train.lr_schedule=[]", "train.lr=0.004")).history
    assert [row[names.LEARNING_RATE] for row in history] == pytest.approx([0.004] * 3)


def test_a_replayed_trial_resumes_exactly(tmp_path: Path) -> None:
    config = replay()
    whole = train(config).history
    saved = {}

    def stop_after_first(epoch):  # type: ignore[no-untyped-def]
        saved.update(epoch.checkpoint())
        return True

    Trial(config).run(stop_after_first)
    resumed = Trial(config)
    resumed.load_state_dict(saved)
    tail = resumed.run().history
    for key in (names.MARGIN, names.LEARNING_RATE, names.TRAIN_LOSS, "val_map_at_r"):
        assert [row[key] for row in tail] == [row[key] for row in whole], key


def test_a_schedule_file_fills_both_schedules(tmp_path: Path) -> None:
    path = tmp_path / "schedule.csv"
    rows = [
        f"{e},{m},{r},t{e}" for e, (m, r) in enumerate(zip(MARGINS, RATES, strict=True), start=1)
    ]
    path.write_text("epoch,margin,train.lr,trial_id\n" + "\n".join(rows) + "\n")
    config = load_config(None, [*TINY, "margin.scheduler=replay", f"margin.schedule={path}"])
    assert config.margin.schedule == MARGINS
    assert config.train.lr_schedule == RATES
    # A learning-rate schedule the config gives itself wins over the file's.
    own = load_config(
        None,
        [*TINY, "margin.scheduler=replay", f"margin.schedule={path}", "train.lr_schedule=[1,1,1]"],
    )
    assert own.train.lr_schedule == (1.0, 1.0, 1.0)
    # The resolved config is plain numbers: it travels to workers and reads back as it was.
    assert load_config(None, [*TINY, *_as_sets(config.flat())]) == config


def _as_sets(flat: dict[str, object]) -> list[str]:
    return [f"{key}={'null' if value is None else value}" for key, value in flat.items()]


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        ("epoch,lr\n1,0.1\n", "margin.schedule", "needs a header with a 'margin' column"),
        ("", "margin.schedule", "found no rows"),
        ("epoch,margin\n1,0.2\n2,abc\n3,0.3\n", "margin.schedule", "line 3: 'abc'"),
        ("epoch,margin\n1,0.2\n3,0.3\n2,0.3\n", "margin.schedule", "line 3: epoch 3, expected 2"),
        ("margin\n0.2\n0.3\n", "margin.schedule", "holds 2 epochs' values, train.epochs is 3"),
        ("margin\n0.2\n-0.3\n0.1\n", "margin.schedule[1]", "must be >= 0.0"),
        ("margin,train.lr\n0.2,0.1\n0.3,0\n0.1,1\n", "train.lr_schedule[1]", "must be > 0"),
    ],
)
def test_a_bad_schedule_file_names_the_field_and_line(
    content: str, field: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(None, [*TINY, "margin.scheduler=replay", f"margin.schedule={path}"])
    assert caught.value.field == field
    assert message in str(caught.value)


def test_a_missing_schedule_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [*TINY, f"margin.schedule={tmp_path / 'none.csv'}"])
    assert caught.value.field == "margin.schedule"
    assert "cannot read schedule file" in str(caught.value)


def test_a_learning_rate_schedule_shorter_than_the_epochs_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [*TINY, "train.lr_schedule=[0.1, 0.1]"])
    assert caught.value.field == "train.lr_schedule"


def test_a_train_section_that_is_not_a_mapping_is_refused_beside_a_schedule_file(
    tmp_path: Path,
) -> None:
    """The file's learning rates do not stand in for a bad ``train`` value: it is refused."""
    path = tmp_path / "schedule.csv"
    path.write_text("margin,train.lr\n0.2,0.1\n0.3,0.1\n0.1,0.1\n")
    data = {"margin": {"scheduler": "replay", "schedule": str(path)}, "train": 3}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert caught.value.field == "train"
