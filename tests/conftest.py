"""Shared fixtures: the real default config, shrunk so a trial takes a second or two.

The suite mirrors the packages (``tests/trainables/``, ``tests/pipeline/<role>/``), with the
house's own checks (``test_layering.py``, ``test_package.py``) here. Helpers the tests import
by name (``harness``, ``sockets``, ``tiny``...) live in ``tests/support/``, which pytest puts on
the path; test modules are imported by path (``--import-mode=importlib``), so two folders may
hold files of one name and no test folder becomes an importable ``pipeline``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import TINY

from margin_tune.trainables.config import Config
from margin_tune.trainables.parts import load_config


@pytest.fixture(autouse=True)
def _in_own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own empty working directory: a default that is relative to it
    (MLflow's ``./mlruns`` artifact root beside a SQLite store, ``runs/``, ``mlflow.db``)
    lands there, never in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def tiny_config() -> Config:
    return load_config(overrides=TINY)
