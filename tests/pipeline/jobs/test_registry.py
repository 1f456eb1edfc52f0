"""Which run ``compare --register-model`` registers: the table's best method on the primary
test metric, then that method's best re-training on validation, never on test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.jobs.compare.registry import choose
from margin_tune.pipeline.jobs.compare.spec import load_compare_spec
from margin_tune.pipeline.runtime.exit_codes import EXIT_BAD_INPUT


def runs_frame(rows: list[tuple[str, int, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "split": 0,
                "method": m,
                "seed": seed,
                "status": status,
                "val_map_at_r": val,
                "test_map_at_r": test,
                "run_id": f"{m}-{seed}",
            }
            for m, seed, status, val, test in [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
        ]
    )


def test_the_method_by_test_mean_and_the_run_by_validation() -> None:
    spec = load_compare_spec(None, "quick", [])
    table = pd.DataFrame(
        [{"method": "dams", "map_at_r_mean": 0.40}, {"method": "constant", "map_at_r_mean": 0.45}]
    )
    runs = runs_frame(
        [
            ("dams", 1, "completed", 0.90, 0.60),
            ("constant", 1, "completed", 0.60, 0.50),  # best on test: never the reason
            ("constant", 2, "completed", 0.70, 0.40),  # best on validation: chosen
            ("constant", 3, "failed", float("nan"), float("nan")),
        ]
    )
    chosen = choose(table, runs, spec)
    assert chosen is not None and chosen["run_id"] == "constant-2"


def test_nothing_is_chosen_without_a_measured_run() -> None:
    spec = load_compare_spec(None, "quick", [])
    table = pd.DataFrame([{"method": "dams", "map_at_r_mean": float("nan")}])
    assert choose(table, runs_frame([("dams", 1, "failed", float("nan"), 0.1)]), spec) is None


@pytest.mark.parametrize("name", ["", "  ", "a/b", "models:x"])
def test_a_bad_model_name_is_refused_before_anything_starts(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    code = main(["compare", "--preset", "quick", "--out", str(out), "--register-model", name])
    assert code == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("margin-tune: error: --register-model: ")
    assert not out.exists()


def test_registering_a_run_again_adds_no_version(tmp_path: Path) -> None:
    """A resumed comparison registers its winner again: the same version, the alias on it."""
    from mlflow import MlflowClient
    from mlflow.models import Model

    from margin_tune.pipeline.tracking.tracker import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tmp_path / "model"
    folder.mkdir()
    Model().save(str(folder / "MLmodel"))
    with Tracker(uri, "registry", artifact_location=(tmp_path / "artifacts").as_uri()) as tracker:
        runs = [tracker.sweep_run(f"final {i}", sweep_id=f"f{i}") for i in range(2)]
        for run in runs:
            tracker.log_model(run, folder, "embedder")
        first = tracker.register_model("champions", runs[0], "embedder", alias="champion")
        again = tracker.register_model("champions", runs[0], "embedder", alias="champion")
        other = tracker.register_model("champions", runs[1], "embedder", alias="champion")
    assert (first, again, other) == ("1", "1", "2")
    client = MlflowClient(uri, registry_uri=uri)
    assert len(client.search_model_versions("name = 'champions'")) == 2
    assert str(client.get_model_version_by_alias("champions", "champion").version) == "2"
