"""What a person sees in the MLflow UI, checked through the UI server itself.

A real ``mlflow server`` on loopback records a tiny comparison; its REST API (the one the UI's
pages call) must show the nesting comparison → sweeps → trials, per-epoch histories at
``step=epoch`` and the comparison's table and plots as artifacts the server can hand out. The
``margin-tune ui`` command is run as a user would: it prints its URLs, they answer, and Ctrl-C
stops it and every server it started. Where Chromium is installed (Debian's ``chromium``
package), the experiment page is rendered headless and saved as a screenshot.
"""

from __future__ import annotations

import base64
import html.parser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow_server import MlflowServer, free_port
from sockets import listeners, processes
from tiny import TINY

from margin_tune.pipeline.analysis.tables import mean_ci
from margin_tune.pipeline.api.config import OPTUNA_JOURNAL
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.sweep.models import MODEL_NAME
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    BEST_RUN_TAG,
    COMMAND_TAG,
    KIND_TAG,
    SCHEDULER_TAG,
    STAGE_TAG,
    SWEEP_ID_TAG,
)

EXPERIMENT = "ui-test"
METHODS = ("dams", "constant")
REGISTERED = "margin-tune-ui-test"
TRIALS = 2
EPOCHS = 2
SEEDS = 2
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Set by .ci/run, which installs Chromium: there a missing browser fails the browser test
#: instead of skipping it, so a CI run always renders the UI.
REQUIRE_CHROMIUM_VARIABLE = "MARGIN_TUNE_REQUIRE_CHROMIUM"
REQUIRE_CHROMIUM = os.environ.get(REQUIRE_CHROMIUM_VARIABLE) == "1"
#: As Debian's chromium runs as root in a sandbox without a network (see the README).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

#: What the tracker sets for an HTTP store, and no job runner beside the server (faster start).
_SERVER_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


@dataclass
class Compared:
    """A tiny comparison recorded by a loopback ``mlflow server``."""

    server: MlflowServer
    experiment_id: str
    runs: list[dict[str, Any]]
    #: The comparison's output directory (its manifest, its Optuna studies' journal).
    out: Path

    def get(self, endpoint: str, **query: str) -> Any:
        url = f"{self.server.url}{endpoint}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def by_kind(self, kind: str) -> list[dict[str, Any]]:
        return [run for run in self.runs if tags(run).get(KIND_TAG) == kind]

    def children(self, parent: dict[str, Any]) -> list[dict[str, Any]]:
        parent_id = parent["info"]["run_id"]
        return [run for run in self.runs if tags(run).get("mlflow.parentRunId") == parent_id]


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}


def search_runs(url: str, experiment_id: str) -> list[dict[str, Any]]:
    body = json.dumps({"experiment_ids": [experiment_id], "max_results": 1000}).encode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/runs/search",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response).get("runs", [])


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compared]:
    directory = tmp_path_factory.mktemp("ui")
    spec = directory / "compare.yaml"
    spec.write_text(
        "methods: {" + ", ".join(f"{m}: {m}" for m in METHODS) + "}\n"
        f"budget: {{trials: {TRIALS}, epochs: {EPOCHS}}}\n"
        "searcher: random\n"
        f"seeds: {SEEDS}\n"
        "set: [" + ", ".join(json.dumps(o) for o in TINY) + "]\n"
    )
    saved = {name: os.environ.get(name) for name in _SERVER_ENV}
    os.environ.update(_SERVER_ENV)
    server = MlflowServer(directory, directory / "server.db")
    try:
        server.start()
        code = main(
            [
                *("compare", "--config", str(spec), "--out", str(directory / "cmp")),
                *("--tracking-uri", server.url, "--experiment", EXPERIMENT),
                *("--no-early-stopping", "--register-model", REGISTERED),
            ]
        )
        assert code == 0
        with urllib.request.urlopen(
            f"{server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}",
            timeout=30,
        ) as response:
            experiment_id = json.load(response)["experiment"]["experiment_id"]
        runs = search_runs(server.url, experiment_id)
        yield Compared(server, experiment_id, runs, directory / "cmp")
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.slow
def test_the_ui_server_shows_nesting_histories_and_artifacts(compared: Compared) -> None:
    (comparison,) = compared.by_kind("comparison")
    assert tags(comparison)["mlflow.runName"] == "compare dams vs constant"
    nested = compared.children(comparison)
    sweeps = [run for run in nested if tags(run).get(KIND_TAG) == "sweep"]
    finals = [run for run in nested if tags(run).get(STAGE_TAG) == "final"]
    assert sorted(tags(run)["mlflow.runName"] for run in sweeps) == sorted(METHODS)
    assert len(finals) == len(METHODS) * SEEDS
    for sweep in sweeps:
        trials = compared.children(sweep)
        assert len(trials) == TRIALS
        for trial in trials:
            # The run name says the scheduler and its key parameters.
            scheduler = tags(trial)[SCHEDULER_TAG]
            assert tags(trial)["mlflow.runName"].startswith(f"{scheduler} μ0=")
            assert "lr=" in tags(trial)["mlflow.runName"]
            for key in ("margin", "easy_ratio", "val_roc_auc"):
                history = compared.get(
                    "/api/2.0/mlflow/metrics/get-history",
                    run_id=trial["info"]["run_id"],
                    metric_key=key,
                )["metrics"]
                assert sorted(point["step"] for point in history) == list(range(1, EPOCHS + 1))

    run_id = comparison["info"]["run_id"]
    listed = compared.get("/api/2.0/mlflow/artifacts/list", run_id=run_id, path="comparison")
    names = {Path(item["path"]).name for item in listed.get("files", [])}
    assert {"table.md", "table.csv", "comparisons.csv", "test_metrics.png"} <= names
    assert {"final_margin.png", "final_easy_ratio.png"} <= names
    # What the UI's artifact viewer fetches: the image itself, served by this server.
    query = urllib.parse.urlencode({"run_uuid": run_id, "path": "comparison/test_metrics.png"})
    with urllib.request.urlopen(f"{compared.server.url}/get-artifact?{query}") as response:
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    for sweep in sweeps:
        space = compared.get(
            "/api/2.0/mlflow/artifacts/list", run_id=sweep["info"]["run_id"], path="space"
        )
        assert [Path(item["path"]).name for item in space["files"]] == [
            f"{tags(sweep)['mlflow.runName']}.yaml"
        ]


@pytest.mark.slow
def test_the_registry_holds_the_winner_by_test_mean_and_validation(
    compared: Compared, tmp_path: Path
) -> None:
    """``--register-model``: alias champion on a version of the table's best method, whose run
    is that method's best re-training on validation."""
    version = compared.get(
        "/api/2.0/mlflow/registered-models/alias", name=REGISTERED, alias="champion"
    )["model_version"]
    table = pd.read_csv(compared.out / "table.csv")
    runs = pd.read_csv(compared.out / "runs.csv")
    best = table.loc[table["map_at_r_mean"].idxmax(), "method"]
    mine = runs[runs["method"] == best]
    assert version["run_id"] == mine.loc[mine["val_map_at_r"].idxmax(), "run_id"]
    assert version["source"].startswith("models:/m-")
    assert {t["key"]: t["value"] for t in version["tags"]}["margin_tune.method"] == best
    # The alias is a model URI embed reads, through the server.
    out = tmp_path / "champion.npz"
    uri = f"models:/{REGISTERED}@champion"
    command = ["embed", "--model", uri, "--tracking-uri", compared.server.url, "--out", str(out)]
    assert main(command) == 0 and np.load(out)["X"].shape[1] == 16


@pytest.mark.slow
def test_every_re_training_logged_its_network_through_the_server(compared: Compared) -> None:
    """Each final run has one READY model (the run's Models column), and the winners of the
    tuning sweeps one each; the artifacts sit where the server serves them."""
    (comparison,) = compared.by_kind("comparison")
    nested = compared.children(comparison)
    finals = [run for run in nested if tags(run).get(STAGE_TAG) == "final"]
    sweeps = [run for run in nested if tags(run).get(KIND_TAG) == "sweep"]
    winners = [tags(sweep)[BEST_RUN_TAG] for sweep in sweeps]
    for run_id in [run["info"]["run_id"] for run in finals] + winners:
        run = compared.get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]
        (output,) = run["outputs"]["model_outputs"]
        model = compared.get(f"/api/2.0/mlflow/logged-models/{output['model_id']}")["model"]
        assert model["info"]["status"] == "LOGGED_MODEL_READY"
        assert model["info"]["name"] == "embedder" and model["info"]["source_run_id"] == run_id


@pytest.mark.slow
@pytest.mark.chromium
@pytest.mark.skipif(
    CHROMIUM is None and not REQUIRE_CHROMIUM,
    reason="no chromium binary (apt-get install chromium)",
)
def test_the_experiment_page_renders_in_chromium(compared: Compared, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.fail(f"{REQUIRE_CHROMIUM_VARIABLE}=1, but no chromium binary is on PATH")
    page = f"{compared.server.url}/#/experiments/{compared.experiment_id}/runs"
    common = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
        "--window-size=1400,900",
        "--virtual-time-budget=20000",
    ]

    def rendered(url: str) -> str:
        command = [*common, "--dump-dom", url]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=180, check=True
        ).stdout

    (comparison,) = compared.by_kind("comparison")
    # The comparison trained on the training classes of its dataset (validation and test
    # are inputs too, shown as "+2"): the one the Dataset column names.
    (dataset,) = [
        (entry["dataset"]["name"], entry["dataset"]["digest"])
        for entry in comparison["inputs"]["dataset_inputs"]
        if {"key": "mlflow.data.context", "value": "training"} in entry["tags"]
    ]
    # The Source column shows a script by its file name ("margin-tune compare" from the CLI).
    source = Path(tags(comparison)["mlflow.source.name"]).name
    dom = rendered(page)
    # The JS app rendered the runs list, with the comparison's parent run in it, and its
    # Dataset and Source columns filled: the dataset by name and digest, the command.
    assert "compare dams vs constant" in dom
    assert f"{dataset[0]} ({dataset[1]})" in dom
    assert source in dom
    # The registered network's run: its Dataset, Source, logged model (the Models column of
    # the re-training rows) and the registry entry.
    version = compared.get(
        "/api/2.0/mlflow/registered-models/alias", name=REGISTERED, alias="champion"
    )["model_version"]
    winner = (
        f"{compared.server.url}/#/experiments/{compared.experiment_id}/runs/{version['run_id']}"
    )
    dom = rendered(winner)
    assert f"{dataset[0]} ({dataset[1]})" in dom
    assert source in dom
    assert "Logged models" in dom and MODEL_NAME in dom
    assert "Registered models" in dom and REGISTERED in dom
    screenshot = tmp_path / "experiment.png"
    subprocess.run(
        [*common, f"--screenshot={screenshot}", page],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert screenshot.stat().st_size > 20_000
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (900, 1400)
    assert pixels[..., :3].std() > 0.05  # not a blank page


class _Page(html.parser.HTMLParser):
    """Every element's attributes, the ids, and each table row's cells (attributes, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.rows: list[tuple[dict[str, str], list[tuple[dict[str, str], str]]]] = []
        self._cell: tuple[dict[str, str], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if tag == "tr":
            self.rows.append((attributes, []))
        elif tag in ("td", "th"):
            self._cell = (attributes, [])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append((self._cell[0], "".join(self._cell[1])))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1].append(data)


def _html_report(compared: Compared, out: Path) -> tuple[str, _Page]:
    (comparison,) = compared.by_kind("comparison")
    command = [
        *("report", "--tracking-uri", compared.server.url, "--experiment", EXPERIMENT),
        *("--comparison", tags(comparison)[SWEEP_ID_TAG], "--html", str(out)),
    ]
    assert main(command) == 0
    text = out.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


@pytest.mark.slow
def test_the_html_report_is_one_self_contained_file_whose_numbers_are_table_csv(
    compared: Compared, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    text, page = _html_report(compared, out)
    assert capsys.readouterr().out == f"wrote {out}\n"
    # Nothing outside the file: every image inline, every link to a section of the page.
    ids = {attributes["id"] for _, attributes in page.elements if "id" in attributes}
    images = [attributes["src"] for tag, attributes in page.elements if tag == "img"]
    assert all(
        name not in attributes
        for tag, attributes in page.elements
        for name in ("src", "href", "srcset", "action", "data", "poster")
        if tag != "img" and not (tag == "a" and name == "href")
    )
    for tag, attributes in page.elements:
        if tag == "a":
            assert attributes["href"].startswith("#") and attributes["href"][1:] in ids
    assert not [tag for tag, _ in page.elements if tag in ("link", "script", "iframe", "base")]
    assert "@import" not in text and "url(" not in text
    # The four plots and one embedding map per method, each a whole PNG.
    assert len(images) == 4 + len(METHODS)
    for source in images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # The key numbers are table.csv's and comparisons.csv's, unrounded and as shown.
    table = pd.read_csv(compared.out / "table.csv").set_index("method")
    shown = {attrs["data-method"]: cells for attrs, cells in page.rows if "data-method" in attrs}
    assert sorted(shown) == sorted(table.index)
    for method, cells in shown.items():
        metrics = {a["data-metric"]: (a, text) for a, text in cells if "data-metric" in a}
        assert "map_at_r" in metrics and "recall_at_1" in metrics
        for metric, (attributes, cell) in metrics.items():
            mean, ci95 = table.loc[method, f"{metric}_mean"], table.loc[method, f"{metric}_ci95"]
            assert float(attributes["data-value"]) == mean
            assert float(attributes["data-ci95"]) == ci95
            assert cell == mean_ci(mean, ci95)
    tests = pd.read_csv(compared.out / "comparisons.csv")
    in_page = [
        cells for attrs, cells in page.rows if len(cells) == 8 and cells[0][1] != "scheduler"
    ]
    assert len(in_page) == len(tests)
    for cells, (_, row) in zip(in_page, tests.iterrows(), strict=True):
        assert (cells[0][1], cells[1][1]) == (row["scheduler"], row["baseline"])
        assert float(cells[3][0]["data-value"]) == row["mean_difference"]
        holm = cells[6][0]["data-value"]
        assert (holm == "nan") if pd.isna(row["holm_p"]) else float(holm) == row["holm_p"]
    # The command that produced the comparison and the versions it ran with.
    (comparison,) = compared.by_kind("comparison")
    assert html.escape(tags(comparison)[COMMAND_TAG]) in text
    assert tags(comparison)["margin_tune.versions.torch"] in text
    # Asked again for the same file: refused, the page kept.
    before = out.read_bytes()
    command = ["report", "--tracking-uri", compared.server.url, "--experiment", EXPERIMENT]
    command += ["--comparison", tags(comparison)[SWEEP_ID_TAG], "--html", str(out)]
    assert main(command) == 2
    assert "--html" in capsys.readouterr().err and out.read_bytes() == before


@pytest.mark.slow
@pytest.mark.chromium
@pytest.mark.skipif(
    CHROMIUM is None and not REQUIRE_CHROMIUM,
    reason="no chromium binary (apt-get install chromium)",
)
def test_the_html_report_renders_in_chromium_without_a_network(
    compared: Compared, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.fail(f"{REQUIRE_CHROMIUM_VARIABLE}=1, but no chromium binary is on PATH")
    out = tmp_path / "report.html"
    _html_report(compared, out)
    offline = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
        "--window-size=1280,2000",
        # No network at all: every host unresolvable, every proxy connection refused.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
    ]
    dom = subprocess.run(
        [*offline, "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    table = pd.read_csv(compared.out / "table.csv")
    for _, row in table.iterrows():
        assert mean_ci(row["map_at_r_mean"], row["map_at_r_ci95"]) in dom
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [*offline, f"--screenshot={screenshot}", out.as_uri()],
        capture_output=True,
        timeout=180,
        check=True,
    )
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # not a blank page
    # The plots were drawn: far more than text on white (a broken image is a small icon).
    assert (pixels[..., :3].std(axis=2) > 0.1).mean() > 0.01


def _store_with_one_sweep(directory: Path) -> tuple[str, str]:
    """A SQLite MLflow store holding one sweep with one trial, and an Optuna RDB study."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    with Tracker(uri, EXPERIMENT, artifact_location=(directory / "artifacts").as_uri()) as tracker:
        sweep = tracker.sweep_run("dams", sweep_id="s1", tags={KIND_TAG: "sweep"})
        trial = tracker.child_run(sweep, "t1", name="dams μ0=0.2 target=0.95 step=0.05 lr=1e-03")
        for epoch in (1, 2):
            tracker.log_epoch(trial, {"margin": 0.2 * epoch}, step=epoch)
        tracker.end_run(trial)
        tracker.end_run(sweep)
    storage = f"sqlite:///{directory / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="margin-tune-dams-s1")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    return uri, storage


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """stdout lines of ``process`` up to the one containing ``marker``."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in the output: {lines}")


def _answers(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


def _in_sessions(sessions: set[int]) -> set[int]:
    return {pid for pid, (_, session) in processes().items() if session in sessions}


@pytest.mark.slow
def test_margin_tune_ui_prints_urls_that_answer_and_ctrl_c_stops_everything(
    tmp_path: Path,
) -> None:
    uri, storage = _store_with_one_sweep(tmp_path)
    command = [*("--tracking-uri", uri, "--experiment", EXPERIMENT)]
    port = free_port()
    command += ["--port", str(port)]
    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    optuna_port = free_port()
    if dashboard is not None:  # the [ui] extra is installed
        command += ["--storage", storage, "--optuna-port", str(optuna_port)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from margin_tune.pipeline.cli.main import main; main()",
            "ui",
            *command,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the test's SIGINT reaches it alone, as a terminal's would
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = _read_until(process, "press Ctrl-C", timeout=240)
        ui_line = next(line for line in lines if line.startswith("MLflow UI:"))
        url = ui_line.split()[2]
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/") and url.endswith("/runs")
        assert _answers(url) == 200
        if dashboard is not None:
            assert f"optuna-dashboard: http://127.0.0.1:{optuna_port}/" in lines[-2]
            assert _answers(f"http://127.0.0.1:{optuna_port}/api/studies") == 200
        # Each server leads its own session, started by the ui process.
        servers = {
            pid
            for pid, (parent, session) in processes().items()
            if parent == process.pid and session == pid
        }
        assert len(servers) == (2 if dashboard is not None else 1)
        bound = listeners(process.pid)  # the servers' own sockets, read from /proc
        assert port in {listener.port for listener in bound}
        assert [f"{s.address}:{s.port}" for s in bound if not s.loopback] == []
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Nothing left: no server process, nothing listening on either port.
    deadline = time.monotonic() + 10
    while _in_sessions(servers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _in_sessions(servers) == set()
    for free in (port, optuna_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", free)) != 0


@pytest.mark.slow
def test_the_dashboard_shows_a_comparisons_studies_from_its_directory_alone(
    compared: Compared,
) -> None:
    """``compare`` without ``--storage`` keeps its studies in ``DIR/optuna-journal.log``; ``ui
    --sweep-dir DIR`` finds them from the manifest: one study per method, each trial told."""
    if shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the [ui] extra (optuna-dashboard) is not installed")
    optuna_port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-c", "from margin_tune.pipeline.cli.main import main; main()"),
            *("ui", "--tracking-uri", compared.server.url, "--sweep-dir", str(compared.out)),
            *("--optuna-port", str(optuna_port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = _read_until(process, "press Ctrl-C", timeout=240)
        assert OPTUNA_JOURNAL in next(line for line in lines if "optuna-dashboard:" in line)
        base = f"http://127.0.0.1:{optuna_port}/api/studies"
        with urllib.request.urlopen(base, timeout=30) as response:
            studies = json.load(response)["study_summaries"]
        assert sorted(s["study_name"].split("-")[2] for s in studies) == sorted(METHODS)
        for study in studies:
            with urllib.request.urlopen(f"{base}/{study['study_id']}", timeout=30) as response:
                trials = json.load(response)["trials"]
            assert len(trials) == TRIALS
            assert {trial["state"] for trial in trials} <= {"Complete", "Pruned"}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_port_in_use_is_refused_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(uri, EXPERIMENT).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--tracking-uri", uri, "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert "margin-tune: error: --port:" in error
    assert str(port) in error


def test_a_missing_store_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    port = str(free_port())
    assert main(["ui", "--tracking-uri", f"sqlite:///{missing}", "--port", port]) == 2
    assert "--tracking-uri" in capsys.readouterr().err
    assert not missing.exists()


def test_an_http_store_is_already_the_ui(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ui", "--tracking-uri", "http://127.0.0.1:9"]) == 0
    assert "already the MLflow UI" in capsys.readouterr().out


def test_a_sweep_without_optuna_storage_is_refused_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "margin-tune.json").write_text(json.dumps({"options": {"storage": None}}))
    assert main(["ui", "--sweep-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "margin-tune: error: --sweep-dir:" in error
    assert "kept its Optuna study in memory" in error
