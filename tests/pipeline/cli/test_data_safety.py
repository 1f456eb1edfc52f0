"""Data safety: user-given names never become paths outside ``--out``; one command per output
directory at a time; option values that would hang or fail deep inside are refused first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.outputs.folders import LOCK_FILE, output_lock
from margin_tune.pipeline.outputs.names import check_experiment_name, check_file_name
from margin_tune.pipeline.search.space import parse_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep
from margin_tune.trainables.config import Config
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import load_config

UNIFORM_LR = {"distribution": "log_uniform", "low": 1e-4, "high": 1e-2}
WIDE_BATCH = {"distribution": "int", "low": 4, "high": 32}

HOSTILE = ["/tmp/abs", "../x", "a/b", "..", ".", ".hidden", "-rf", "a\nb", "ü", "x" * 65, ""]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_name_that_is_not_one_plain_path_component_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="letters, digits") as caught:
        check_file_name(name, "compare.methods.x")
    assert caught.value.field == "compare.methods.x"


@pytest.mark.parametrize("name", ["dams", "two_sided", "PBT-found.v2", "a" * 64])
def test_plain_names_are_kept(name: str) -> None:
    assert check_file_name(name, "f") == name


def snapshot(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")}


@pytest.mark.parametrize("name", ["/ABSOLUTE", "../beside", "a/b", "..", "x\ty"])
def test_compare_with_a_hostile_method_name_exits_2_and_writes_nothing(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    victim = tmp_path / "ABSOLUTE"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    method = str(victim) if name == "/ABSOLUTE" else name
    spec = work / "compare.yaml"
    spec.write_text(yaml.safe_dump({"methods": {method: "dams", "constant": "constant"}}))
    before = snapshot(tmp_path)
    out = work / "out"
    code = main(["compare", "--config", str(spec), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compare.methods." in err and "letters, digits" in err
    assert snapshot(tmp_path) == before
    assert (victim / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["", "   ", "x" * 257, "a\x00b"])
def test_an_unusable_experiment_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_experiment_name(name)
    assert caught.value.field == "--experiment"
    with pytest.raises(ConfigError):
        SweepOptions(trials=1, experiment=name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpus_per_trial", float("nan")),
        ("gpus_per_trial", float("nan")),
        ("cpus_per_trial", 0.0),
        ("gpus_per_trial", float("inf")),
        ("cpus_per_trial", float("inf")),
    ],
)
def test_resources_that_no_trial_can_get_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        SweepOptions(trials=1, **{field: value})  # type: ignore[arg-type]
    assert caught.value.field == "--" + field.replace("_", "-")


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from margin_tune.pipeline.outputs.folders import output_lock
    with output_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_second_command_on_a_locked_directory_is_refused_and_a_killed_holder_frees_it(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(ConfigError, match=rf"in use by .*PID {holder.pid}") as caught,
            output_lock(tmp_path),
        ):
            pass
        assert caught.value.field == "DIR"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The killed holder's lock file is still there, with its PID: it is taken over.
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(holder.pid)
    with output_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_resume_of_a_directory_in_use_exits_2_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "margin-tune.json").write_text(
        '{"format": 2, "command": "tune", "name": "x", "space_name": "x", "sweep_id": "s",'
        ' "base": {}, "options": {"trials": 1}}'
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        assert main(["resume", str(out)]) == 2
        assert time.perf_counter() - started < 5
        assert f"PID {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_train_on_a_directory_in_use_is_refused_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_overrides: list[str]
) -> None:
    out = tmp_path / "train"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    sets = [item for o in tiny_overrides for item in ("--set", o)]
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["train", *sets, "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert "--out" in error and f"PID {holder.pid}" in error
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing half-written
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's read-only /sys")
@pytest.mark.parametrize("command", ["train", "tune"])
def test_an_out_on_a_read_only_file_system_is_refused_before_anything_starts(
    command: str, capsys: pytest.CaptureFixture[str], tiny_overrides: list[str]
) -> None:
    """/sys refuses new folders even to root, which ignores a folder's own permissions."""
    out = Path("/sys/margin-tune-out")
    sets = [item for o in tiny_overrides for item in ("--set", o)]
    extra = ["--space", "constant", "--trials", "1"] if command == "tune" else []
    started = time.perf_counter()
    assert main([command, *sets, *extra, "--out", str(out)]) == 2
    assert time.perf_counter() - started < 30
    error = capsys.readouterr().err
    assert "margin-tune: error: --out: cannot create /sys/margin-tune-out" in error
    assert not out.exists()


def test_every_bound_of_a_space_is_checked_against_the_data(tiny_config: Config) -> None:
    """tiny: 15 training classes; a batch of 32 classes only exists at the range's top."""
    space = parse_space(
        {
            "parameters": {
                "sampler.classes_per_batch": {"distribution": "int", "low": 4, "high": 32}
            }
        },
        tiny_config,
        name="wide",
    )
    with pytest.raises(ConfigError) as caught:
        plan_sweep("wide", tiny_config, space, SweepOptions(trials=1), Path("unused"))
    assert caught.value.field == "space.parameters.sampler.classes_per_batch"
    assert "32" in str(caught.value)
    assert not Path("unused").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_before_anything_starts(tiny_config: Config) -> None:
    config = replace(tiny_config, train=replace(tiny_config.train, device="cuda"))
    space = parse_space({"parameters": {"train.lr": UNIFORM_LR}}, config, name="lr")
    with pytest.raises(ConfigError) as caught:
        plan_sweep("lr", config, space, SweepOptions(trials=1), Path("unused"))
    assert caught.value.field == "train.device"


def test_a_dataset_with_one_sample_per_class_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "one.npz"
    rng = np.random.default_rng(0)
    np.savez(data, X=rng.normal(size=(40, 8)).astype(np.float32), y=np.arange(40))
    config = load_config(overrides=[f"dataset.path={data}", "dataset.name=npz"])
    space = parse_space({"parameters": {"train.lr": UNIFORM_LR}}, config, name="lr")
    with pytest.raises(ConfigError) as caught:
        plan_sweep("lr", config, space, SweepOptions(trials=1), tmp_path / "out")
    assert caught.value.field.startswith(("dataset", "sampler"))
    assert not (tmp_path / "out").exists()
