"""Ctrl-C and SIGTERM: a sweep stops cleanly, says how to resume, and exits 130 or 143.

Ray Tune catches the first SIGINT during ``Tuner.fit``: it stops the trials, writes a last
snapshot and returns as if the experiment had ended. What ends a sweep, a comparison or an
ablation is then decided here: a fit that returns with trials neither terminated nor errored
was interrupted, and :class:`InterruptedRunError` carries that up to the CLI instead of a
table built from half-run trials. SIGTERM gets the same graceful stop: during a fit it is
turned into the SIGINT that Tune handles; elsewhere it stops the command as Ctrl-C would.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from margin_tune.pipeline.runtime.exit_codes import EXIT_SIGINT, EXIT_SIGTERM

_received: int | None = None
_fitting = False
_handling = False


class InterruptedRunError(Exception):
    """A command stopped by a signal; ``out`` is the directory ``resume`` continues."""

    def __init__(self, out: Path | None = None) -> None:
        super().__init__("interrupted")
        self.out = out

    @property
    def exit_code(self) -> int:
        return exit_code()


def exit_code() -> int:
    """130 for SIGINT (and when no signal was recorded), 143 for SIGTERM."""
    return EXIT_SIGTERM if _received == signal.SIGTERM else EXIT_SIGINT


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    if _fitting:
        signal.raise_signal(signal.SIGINT)  # Tune's graceful stop
        return
    raise KeyboardInterrupt


@contextmanager
def handled() -> Iterator[None]:
    """SIGTERM handled as a graceful stop for the block (a CLI command), then as before."""
    global _received, _handling
    _received, _handling = None, True
    previous: Any = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        _handling = False
        signal.signal(signal.SIGTERM, previous)


def rearm() -> None:
    """Install the SIGTERM handler again after ``ray.init``, whose core installs its own
    (which dumps a stack trace and aborts the driver, rc 134)."""
    if _handling:
        signal.signal(signal.SIGTERM, _on_sigterm)


@contextmanager
def fitting() -> Iterator[None]:
    """Marks a ``Tuner.fit``: a SIGTERM in it becomes Tune's graceful SIGINT."""
    global _fitting
    _fitting = True
    try:
        yield
    finally:
        _fitting = False


def unfinished_trial_ids(experiment: Path) -> set[str]:
    """Trials that the experiment's last snapshot holds as neither terminated nor errored.

    After a normal end there are none. After Tune's graceful stop on SIGINT, the trials that
    were running or pending are saved so, which is what ``Tuner.restore`` continues (the
    in-memory trials are marked terminated by Tune's clean-up, so the snapshot on disk is what
    tells).
    """
    from ray.tune import ExperimentAnalysis

    if not list(experiment.glob("experiment_state-*.json")):
        return set()
    trials = ExperimentAnalysis(str(experiment)).trials
    return {trial.trial_id for trial in trials if trial.status not in ("TERMINATED", "ERROR")}
