"""Helpers of the fault-injection tests: waiting for a condition, a Ray kept to itself."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

_T = TypeVar("_T")


def wait_for(probe: Callable[[], _T | None], timeout: float, what: str) -> _T:
    """Polls ``probe`` until it returns something other than None, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def private_ray_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Points ``RAY_TMPDIR`` at a fresh directory for as long as the block lasts.

    Ray records the last cluster started on a host in ``<tmp>/ray/ray_current_cluster``, and
    ``ray.init()`` without an address joins the cluster named there instead of starting its own
    (then refuses ``num_cpus``: "When connecting to an existing cluster, num_cpus and num_gpus
    must not be provided"). With its own directory a test neither joins another test's or
    user's cluster nor lets them join its own. The path is short: Ray's socket paths under it
    must stay within the 107 bytes a Unix socket name may have.
    """
    directory = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", directory)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
