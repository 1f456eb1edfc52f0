"""Our Tune settings hold during a fit only, and a user's own values win."""

from __future__ import annotations

import os

import pytest

from margin_tune.pipeline.sweep.tuner import TUNE_ENVIRONMENT, tune_environment


def test_settings_apply_inside_and_vanish_after(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in TUNE_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    with tune_environment():
        assert {key: os.environ[key] for key in TUNE_ENVIRONMENT} == TUNE_ENVIRONMENT
    assert not set(TUNE_ENVIRONMENT) & set(os.environ), "a later Tuner must not inherit them"


def test_a_users_setting_wins_and_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    with tune_environment():
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "0"
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "0"
