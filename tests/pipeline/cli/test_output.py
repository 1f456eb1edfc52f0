"""What a command prints: a few plain lines by default, only the summary under ``-q``, Ray's
own reporting under ``-v``, one JSON document under ``--json``, a bar on a terminal; and the
whole log in the output directory whatever the console shows.

The sweeps run the real CLI in a subprocess, its stdout a pipe (or a pseudo-terminal), as a
user's shell, CI or ``| tee`` would see it.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pickle
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from mlflow import MlflowClient

import margin_tune
from margin_tune.pipeline.runtime import logs
from margin_tune.pipeline.runtime.console import Console, current
from margin_tune.pipeline.sweep.progress import TrialProgress, clock
from margin_tune.pipeline.tracking.vocabulary import STATUS_TAG
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.parts import config_from_dict

EXECUTABLE = Path(sys.executable).with_name("margin-tune")
#: The bound the issue set on a 4-trial sweep's default output, stdout and stderr together.
MAX_LINES = 15
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline


def sweep_command(tmp_path: Path, tiny: list[str], trials: int, *flags: str) -> list[str]:
    sets = [item for o in [*tiny, "train.epochs=2"] for item in ("--set", o)]
    return [
        *(str(EXECUTABLE), "tune", "--space", "dams", "--trials", str(trials)),
        *("--searcher", "random", "--seed", "3", "--no-early-stopping"),
        *("--out", str(tmp_path / "sweep"), "--experiment", "output"),
        *("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *sets, *flags),
    ]


def run_piped(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_CONFIGURE_LOGGING"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def trial_names(tmp_path: Path) -> list[str]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("output")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return [r.info.run_name for r in runs if STATUS_TAG in r.data.tags]


@pytest.mark.slow
def test_a_four_trial_sweep_prints_a_few_plain_lines_and_logs_everything(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    done = run_piped(sweep_command(tmp_path, tiny_overrides, 4))
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    assert not CONTROL.search(done.stdout + done.stderr), "control characters in piped output"
    assert done.stderr == ""  # no library INFO, no token notice
    assert lines[0] == "dams: 4 trials"
    # One line per ended trial, naming its MLflow run, its status and its metric.
    ended = [line for line in lines if re.match(r"\[\d/4\]  ", line)]
    assert [line[:5] for line in ended] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    names = trial_names(tmp_path)
    assert len(names) == 4
    for name in names:
        (line,) = [line for line in ended if name in line]
        assert "completed" in line and re.search(r"val_map_at_r 0\.\d{4}", line)
        assert "2/2 epochs" in line
    assert re.search(
        r"^dams: 4 done, 0 running, 0 stopped, 0 failed; best val_map_at_r", done.stdout, re.M
    )
    assert "best: dams " in done.stdout
    # The file keeps what the console left out: the libraries' INFO and the progress lines.
    log = (tmp_path / "sweep" / logs.LOG_FILE).read_text()
    assert " INFO margin_tune.pipeline.progress: [4/4]  completed" in log
    assert re.search(r" INFO (ray|mlflow|optuna|alembic)[.\w]*: ", log)
    assert "Token authentication is enabled" in log or "INFO ray" in log


@pytest.mark.slow
def test_quiet_prints_only_the_summary_and_still_logs_to_the_file(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    done = run_piped(sweep_command(tmp_path, tiny_overrides, 2, "-q"))
    assert done.stderr == ""
    assert not re.search(r"^\[\d/2\]", done.stdout, re.M), done.stdout
    assert "dams: 2 trials" not in done.stdout
    assert done.stdout.startswith("2 trials: 2 completed")
    assert f"wrote {tmp_path / 'sweep'}: trials.csv, plots/, {logs.LOG_FILE}" in done.stdout
    log = (tmp_path / "sweep" / logs.LOG_FILE).read_text()
    assert log.count(" INFO margin_tune.pipeline.progress: [") == 2
    assert "margin_tune.pipeline.progress: dams: 2 done" in log


@pytest.mark.slow
def test_json_prints_one_document_on_stdout_and_the_progress_on_stderr(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    done = run_piped(sweep_command(tmp_path, tiny_overrides, 2, "--json"))
    document = json.loads(done.stdout)  # nothing else on stdout
    assert document["command"] == "tune" and document["exit_code"] == 0 and document["ok"]
    assert Path(document["out"]) == (tmp_path / "sweep").resolve()
    assert Path(document["files"]["trials"]).is_file()
    assert Path(document["files"]["log"]).is_file()
    assert document["budget"]["trial_epochs"] == 4
    best = document["best"]
    assert best["run_name"] in trial_names(tmp_path)
    # The best config is a whole config that a train run accepts as it is.
    config = config_from_dict(best["config"])
    assert config.margin.scheduler == "dams" and config.train.epochs == 2
    # What the searcher chose: the space's searched parameters, not its fixed scheduler.
    assert set(best["searched"]) == {
        "margin.initial_margin",
        "margin.target_easy_ratio",
        "margin.step_size",
        "train.lr",
    }
    assert len(document["trials"]) == 2
    assert "[2/2]" in done.stderr and not CONTROL.search(done.stderr)


@pytest.mark.slow
def test_verbose_brings_back_rays_reporting(tmp_path: Path, tiny_overrides: list[str]) -> None:
    done = run_piped(sweep_command(tmp_path, tiny_overrides, 1, "-v"))
    assert "Trial status" in done.stdout + done.stderr
    assert re.search(r" INFO (ray|mlflow|optuna)[.\w]*: ", done.stderr)


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar(tmp_path: Path, tiny_overrides: list[str]) -> None:
    """On a pseudo-terminal 100 columns wide: the bar is drawn (carriage returns, the count
    of trials) and the trial lines still come through whole."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "TERM": "xterm"}
    command = sweep_command(tmp_path, tiny_overrides, 2)
    driver = subprocess.Popen(command, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            driver.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: every writer exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert driver.wait(timeout=60) == 0
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert "\r" in shown and re.search(r"dams \S* *\d/2 \[", shown), shown[-2000:]
    assert re.search(r"\[2/2\]  completed", shown)
    assert "best: dams " in shown


@pytest.mark.slow
def test_a_script_silences_a_sweep_with_verbosity(
    tmp_path: Path, tiny_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with margin_tune.verbosity("quiet"):
        sweep = margin_tune.tune(
            "constant",
            trials=1,
            overrides=[*tiny_overrides, "train.epochs=1"],
            out=tmp_path / "sweep",
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            early_stopping=False,
        )
    assert sweep.ok
    printed = capsys.readouterr()
    assert "[1/1]" not in printed.out + printed.err
    assert "Trial status" not in printed.out + printed.err


def test_the_verbosity_is_checked_and_restored() -> None:
    with pytest.raises(ConfigError, match="verbosity: unknown value 'loud'; allowed: quiet"):
        Console("loud")
    before = current()
    with margin_tune.verbosity("verbose") as console:
        assert current() is console and console.ray_verbose == 1 and not console.live
    assert current() is before
    assert Console("quiet").ray_verbose == 0
    assert not Console("normal", io.StringIO()).live  # not a terminal


def test_console_lines_are_plain_and_also_logged(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="margin_tune.pipeline.progress"):
        Console("normal", stream).say("[1/2]  completed")
        Console("quiet", stream).say("[2/2]  completed")
    assert stream.getvalue() == "[1/2]  completed\n"
    assert [r.getMessage() for r in caplog.records] == ["[1/2]  completed", "[2/2]  completed"]


def test_routing_puts_every_library_logger_back() -> None:
    ray_logger = logging.getLogger("ray")
    own = logging.NullHandler()
    ray_logger.addHandler(own)
    ray_logger.propagate = False
    root_handlers = logging.getLogger().handlers[:]
    try:
        with logs.routed(Console("normal")):
            assert own not in ray_logger.handlers and ray_logger.propagate
            assert len(logging.getLogger().handlers) == len(root_handlers) + 1
            assert os.environ["MLFLOW_CONFIGURE_LOGGING"] == "false"
        assert own in ray_logger.handlers and not ray_logger.propagate
        assert logging.getLogger().handlers == root_handlers
    finally:
        ray_logger.removeHandler(own)
        ray_logger.propagate = True


def test_the_progress_callback_pickles_as_plain_data() -> None:
    """Tune pickles its callbacks with the experiment: no console, bar or stream goes in."""
    progress = TrialProgress("dams", 4, config_from_dict, "val_map_at_r", "max")
    progress._console = Console("normal", io.StringIO())  # a stream cannot be pickled
    copy = pickle.loads(pickle.dumps(progress))
    assert (copy.title, copy.total, copy.metric, copy.mode) == ("dams", 4, "val_map_at_r", "max")
    assert copy._console is current() and copy._bar is None


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0:00"), (7.9, "0:07"), (754, "12:34"), (3723, "1:02:03")]
)
def test_clock(seconds: float, shown: str) -> None:
    assert clock(seconds) == shown
