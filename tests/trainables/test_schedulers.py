"""Margin schedulers: each rule on hand-made statistics, and the protocol over every scheduler."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from margin_tune.trainables.config import MarginConfig
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.schedulers import SCHEDULERS, EpochStats, build_scheduler

#: What ``replay`` replays in the tests run over every scheduler: within every bound they use.
REPLAYED = (0.2, 0.25, 0.3, 0.2, 0.45, 0.5, 0.35, 0.4, 0.3)


def margin_config(name: str, **values: float | None) -> MarginConfig:
    """Scheduler ``name``'s config; ``replay`` gets :data:`REPLAYED`, its one parameter."""
    schedule = REPLAYED if name == "replay" else ()
    return MarginConfig(scheduler=name, schedule=schedule, **values)  # type: ignore[arg-type]


def stats(easy_ratio: float, valid: int = 1000) -> EpochStats:
    easy = round(easy_ratio * valid)
    return EpochStats(easy=easy, semihard=valid - easy, hard=0, valid=valid)


def run(config: MarginConfig, ratios: list[float]) -> list[float]:
    scheduler = build_scheduler(config)
    return [scheduler.step(epoch, stats(ratio)) for epoch, ratio in enumerate(ratios, start=1)]


def test_stats_ratios_partition() -> None:
    s = EpochStats(easy=6, semihard=3, hard=1, valid=10)
    assert (s.easy_ratio, s.semihard_ratio, s.hard_ratio) == (0.6, 0.3, 0.1)
    assert math.isnan(EpochStats(0, 0, 0, 0).easy_ratio)


def test_constant_never_moves() -> None:
    config = MarginConfig(scheduler="constant", initial_margin=0.3)
    assert run(config, [1.0, 0.0, 0.99, 0.5]) == [0.3] * 4


def test_linear_rises_on_a_clock_and_caps() -> None:
    config = MarginConfig(scheduler="linear", initial_margin=0.2, rate=0.1, max_margin=0.45)
    # step(t) returns the margin of epoch t + 1: μ0 + rate·t, capped.
    assert run(config, [0.0, 1.0, 0.0, 1.0]) == pytest.approx([0.3, 0.4, 0.45, 0.45])


def test_dams_raises_only_at_target_and_never_decreases() -> None:
    config = MarginConfig(
        scheduler="dams", initial_margin=0.2, target_easy_ratio=0.95, step_size=0.05
    )
    margins = run(config, [0.96, 0.5, 0.95, 0.949, 1.0, 0.0])
    assert margins == pytest.approx([0.25, 0.25, 0.30, 0.30, 0.35, 0.35])


def test_dams_respects_max_margin() -> None:
    config = MarginConfig(
        scheduler="dams", initial_margin=0.2, step_size=0.1, target_easy_ratio=0.9, max_margin=0.35
    )
    assert run(config, [1.0, 1.0, 1.0]) == pytest.approx([0.3, 0.35, 0.35])


def test_two_sided_moves_both_ways_with_a_dead_band() -> None:
    config = MarginConfig(
        scheduler="two_sided",
        initial_margin=0.2,
        target_easy_ratio=0.9,
        step_size=0.1,
        tolerance=0.1,
        min_margin=0.05,
    )
    # up at >= 0.9; hold in [0.8, 0.9); down below 0.8, never below min_margin.
    margins = run(config, [0.95, 0.85, 0.8, 0.79, 0.1, 0.1, 0.1])
    assert margins == pytest.approx([0.3, 0.3, 0.3, 0.2, 0.1, 0.05, 0.05])


def test_pi_tracks_error_and_integrates() -> None:
    config = MarginConfig(
        scheduler="pi", initial_margin=0.2, target_easy_ratio=0.9, kp=0.5, ki=0.1, max_margin=1.0
    )
    scheduler = build_scheduler(config)
    first = scheduler.step(1, stats(1.0))  # e = 0.1, Σe = 0.1
    assert first == pytest.approx(0.2 + 0.5 * 0.1 + 0.1 * 0.1)
    second = scheduler.step(2, stats(1.0))  # e = 0.1, Σe = 0.2
    assert second == pytest.approx(0.2 + 0.05 + 0.02)
    third = scheduler.step(3, stats(0.9))  # e = 0, integral holds the offset
    assert third == pytest.approx(0.2 + 0.02)


def test_pi_anti_windup_stops_integrating_into_a_bound() -> None:
    config = MarginConfig(
        scheduler="pi", initial_margin=0.2, target_easy_ratio=0.5, kp=0.0, ki=1.0, max_margin=0.3
    )
    scheduler = build_scheduler(config)
    for epoch in range(1, 20):
        assert scheduler.step(epoch, stats(1.0)) <= 0.3
    # Without anti-windup the integral would be ~9.5 and one low epoch could not lower μ.
    assert scheduler.step(20, stats(0.0)) < 0.3


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_state_round_trip_continues_identically(name: str) -> None:
    config = margin_config(name, max_margin=2.0, min_margin=0.05)
    ratios = [0.97, 0.3, 0.99, 0.8, 0.96, 0.1, 1.0, 0.93]
    reference = run(config, ratios)
    first = build_scheduler(config)
    for epoch, ratio in enumerate(ratios[:4], start=1):
        first.step(epoch, stats(ratio))
    resumed = build_scheduler(config)
    resumed.load_state_dict(first.state_dict())
    tail = [resumed.step(epoch, stats(r)) for epoch, r in enumerate(ratios[4:], start=5)]
    assert tail == reference[4:]


@pytest.mark.parametrize("name", [n for n in SCHEDULERS.names() if n not in ("linear", "replay")])
def test_no_valid_triplets_leaves_margin_unchanged(name: str) -> None:
    """Difficulty-driven schedulers hold still without evidence (linear and replay follow
    their clock)."""
    scheduler = build_scheduler(MarginConfig(scheduler=name))
    before = scheduler.margin
    assert scheduler.step(1, EpochStats(0, 0, 0, 0)) == before


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_margin_stays_within_bounds(name: str) -> None:
    config = margin_config(name, min_margin=0.1, initial_margin=0.2, max_margin=0.5)
    for margin in run(config, [1.0] * 30 + [0.0] * 30):
        assert 0.1 - 1e-12 <= margin <= 0.5 + 1e-12


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"target_easy_ratio": 1.3}, "margin.target_easy_ratio"),
        ({"target_easy_ratio": 0.0}, "margin.target_easy_ratio"),
        ({"step_size": -0.1}, "margin.step_size"),
        ({"initial_margin": -0.2}, "margin.initial_margin"),
        ({"max_margin": 0.1, "initial_margin": 0.2}, "margin.max_margin"),
        ({"min_margin": 0.3, "initial_margin": 0.2}, "margin.min_margin"),
    ],
)
def test_bad_parameters_fail_at_construction(changes: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        replace(MarginConfig(), **changes)
    assert caught.value.field == field


def test_replay_gives_each_epoch_its_margin_blind_to_difficulty() -> None:
    config = MarginConfig(scheduler="replay", schedule=(0.3, 0.1, 0.7))
    scheduler = build_scheduler(config)
    assert scheduler.margin == 0.3  # the first epoch's, not initial_margin's 0.2
    # step(t) returns μ of epoch t + 1; past its end the schedule holds its last value.
    assert run(config, [1.0, 0.0, 0.5, 1.0]) == [0.1, 0.7, 0.7, 0.7]


def test_replay_without_a_schedule_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        build_scheduler(MarginConfig(scheduler="replay"))
    assert caught.value.field == "margin.schedule"
    assert "schedule.csv" in str(caught.value)


def test_a_negative_replayed_margin_fails_at_construction() -> None:
    with pytest.raises(ConfigError) as caught:
        MarginConfig(scheduler="replay", schedule=(0.2, -0.1))
    assert caught.value.field == "margin.schedule[1]"
