"""The end of a run's imports, made on a thread once the first trial has reported."""

from __future__ import annotations

import pickle
import sys
import threading
from pathlib import Path

import pytest

from margin_tune.pipeline.sweep.warm_up import END_OF_RUN_MODULES, WarmEndOfRunImports


def _warming() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "warm-imports"]


def _report(callback: WarmEndOfRunImports) -> None:
    callback.on_trial_result(iteration=1, trials=[], trial=None, result={"epoch": 1})


def test_the_first_result_imports_each_module_once_on_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "warm_probe_a.py").write_text("import time\ntime.sleep(0.5)\n")
    (tmp_path / "warm_probe_b.py").write_text("raise ImportError('not here')\n")
    (tmp_path / "warm_probe_c.py").write_text("VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("warm_probe_a", "warm_probe_b", "warm_probe_c")
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    callback = WarmEndOfRunImports(names)
    assert not _warming() and not callback.started
    _report(callback)  # returns at once: the imports run on the thread
    threads = _warming()
    assert len(threads) == 1 and threads[0].daemon
    _report(callback)  # later results start nothing more
    assert len(_warming()) <= 1
    threads[0].join(timeout=60)
    # A module that fails to import is skipped; the others are imported.
    assert "warm_probe_a" in sys.modules and "warm_probe_c" in sys.modules
    assert "warm_probe_b" not in sys.modules


def test_tune_pickles_it_as_plain_data_that_warms_again_once_restored() -> None:
    callback = WarmEndOfRunImports(("json",))
    _report(callback)
    for thread in _warming():
        thread.join(timeout=60)
    restored = pickle.loads(pickle.dumps(callback))
    assert restored.modules == ("json",) and not restored.started


def test_the_default_modules_are_importable_names() -> None:
    """Each default is a module that exists here (a renamed one would warm nothing)."""
    import importlib.util

    for name in END_OF_RUN_MODULES:
        assert importlib.util.find_spec(name) is not None, name
