"""``margin-tune train`` and ``embed`` on the benchmarks' native layouts, end to end.

Each archive is written in the layout its real download unpacks to (``benchmark_archives``),
trained on for two tiny epochs with the literature's split, and its saved model embeds the same
archive again. A broken archive is refused with exit code 2, one line naming the problem, and no
output that claims a finished run.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from benchmark_archives import write_cars, write_cub, write_lfw, write_sop

from margin_tune.pipeline.api.training import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE
from margin_tune.pipeline.cli.main import main
from margin_tune.pipeline.outputs.folders import LOCK_FILE
from margin_tune.pipeline.runtime.logs import LOG_FILE
from margin_tune.trainables.saved_model import MODEL_DIR, MODEL_FILE

#: The installed console script, next to the interpreter running the tests.
EXECUTABLE = Path(sys.executable).with_name("margin-tune")

CLASSES, PER_CLASS = 12, 4
"""12 classes: the given split tests on the second half (6), and ``val_fraction`` 0.34 of the
6 given training classes validates on 2, leaving 4 to train on (8 classes would leave 1 to
validate, below the 2 a split needs)."""

TEST_CLASSES = CLASSES - CLASSES // 2
EPOCHS = 2

WRITERS: dict[str, Callable[..., Path]] = {"cub": write_cub, "cars": write_cars, "sop": write_sop}

LITERATURE_RECALL_AT = {"cub": (1, 2, 4, 8), "cars": (1, 2, 4, 8), "sop": (1, 10, 100, 1000)}

#: The brief's tiny trial, for any dataset; the path and the name are added per archive.
TINY = (
    "dataset.image_size=16",
    "dataset.val_fraction=0.34",
    "model.name=cnn",
    "model.hidden_dims=[8,8]",
    "model.embedding_dim=8",
    "sampler.classes_per_batch=2",
    "sampler.samples_per_class=2",
    f"train.epochs={EPOCHS}",
    "train.batches_per_epoch=2",
    "train.num_threads=1",
    "train.device=cpu",
)


def with_sets(overrides: list[str] | tuple[str, ...]) -> list[str]:
    return [item for override in overrides for item in ("--set", override)]


def train_args(name: str, path: Path, out: Path, *extra: str, split: str = "given") -> list[str]:
    overrides = [
        f"dataset.name={name}",
        f"dataset.path={path}",
        f"dataset.split={split}",
        *TINY,
        "train.num_workers=0",
        *extra,
    ]
    return ["train", "--out", str(out), *with_sets(overrides)]


def read_metrics(out: Path) -> list[dict[str, str]]:
    with (out / METRICS_FILE).open(newline="") as handle:
        return list(csv.DictReader(handle))


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{key: value for key, value in row.items() if key != "epoch_seconds"} for row in rows]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One archive of each class-split benchmark, shared by the successful runs (read only)."""
    parent = tmp_path_factory.mktemp("archives")
    return {
        name: writer(parent / name, classes=CLASSES, per_class=PER_CLASS)
        for name, writer in WRITERS.items()
    }


# --- Training and embedding ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(WRITERS))
def test_train_and_embed_on_the_native_layout_with_the_given_split(
    tmp_path: Path, archives: dict[str, Path], name: str
) -> None:
    out = tmp_path / "run"
    assert main(train_args(name, archives[name], out)) == 0

    rows = read_metrics(out)
    assert [row["epoch"] for row in rows] == [str(epoch) for epoch in range(1, EPOCHS + 1)]
    recall_columns = sorted(column for column in rows[0] if column.startswith("val_recall_at_"))
    expected = sorted(f"val_recall_at_{k}" for k in LITERATURE_RECALL_AT[name])
    assert recall_columns == expected
    for row in rows:
        for column in [*recall_columns, "val_map_at_r"]:
            assert 0.0 <= float(row[column]) <= 1.0, (column, row[column])
        assert math.isfinite(float(row["train_loss"]))

    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["stop_reason"] == "completed" and summary["epochs"] == EPOCHS
    for key in ("test_recall_at_1", "test_map_at_r"):
        assert 0.0 <= summary[key] <= 1.0, (key, summary[key])
    for k in LITERATURE_RECALL_AT[name]:
        assert 0.0 <= summary[f"test_recall_at_{k}"] <= 1.0

    description = json.loads((out / MODEL_DIR / MODEL_FILE).read_text())
    preprocessing = description["preprocessing"]
    assert preprocessing["kind"] == "image"
    assert preprocessing["resize_shorter"] >= 16
    assert preprocessing["center_crop"] == [16, 16]
    assert description["input_shape"] == [3, 16, 16]
    assert description["dataset"]["name"] == name

    every = tmp_path / "all.npz"
    assert main(["embed", "--model", str(out), "--out", str(every)]) == 0
    with np.load(every, allow_pickle=False) as embedded:
        assert embedded["X"].shape == (CLASSES * PER_CLASS, 8)
        assert embedded["y"].shape == (CLASSES * PER_CLASS,)
        assert len(embedded["class_names"]) == CLASSES
        np.testing.assert_allclose(np.linalg.norm(embedded["X"], axis=1), 1.0, atol=1e-5)

    test_only = tmp_path / "test.npz"
    assert main(["embed", "--model", str(out), "--classes", "test", "--out", str(test_only)]) == 0
    with np.load(test_only, allow_pickle=False) as embedded:
        assert embedded["X"].shape == (TEST_CLASSES * PER_CLASS, 8)
        assert len(set(embedded["y"].tolist())) == TEST_CLASSES


def test_workers_decode_the_same_batches_as_the_trials_own_process(
    tmp_path: Path, archives: dict[str, Path]
) -> None:
    """Augmentation is seeded per sample, so two workers feed the network the very batches the
    trial's process would: every metric but the timing is equal, to the last digit. A margin of
    2 (the diameter of the unit sphere) keeps every triplet active, so the loss compared is not
    zero."""
    runs = []
    for workers in (0, 2):
        out = tmp_path / f"workers-{workers}"
        args = train_args(
            "cub", archives["cub"], out, "margin.initial_margin=2.0", f"train.num_workers={workers}"
        )
        assert main(args) == 0
        config = yaml.safe_load((out / CONFIG_FILE).read_text())
        assert config["train"]["num_workers"] == workers
        runs.append(read_metrics(out))
    assert all(float(row["train_loss"]) > 0 for row in runs[0])
    assert [row["train_loss"] for row in runs[1]] == [row["train_loss"] for row in runs[0]]
    assert without_timing(runs[1]) == without_timing(runs[0])


def test_lfw_trains_on_a_seeded_split(tmp_path: Path) -> None:
    """LFW has no class split of its own: ``seeded`` splits its 8 people 3 / 3 / 2."""
    path = write_lfw(tmp_path / "archive", people=8, per_person=4, folds=2)
    out = tmp_path / "run"
    assert main(train_args("lfw", path, out, split="seeded")) == 0
    assert len(read_metrics(out)) == EPOCHS
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["stop_reason"] == "completed"
    assert 0.0 <= summary["test_recall_at_1"] <= 1.0


def test_lfw_refuses_the_given_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lfw(tmp_path / "archive")
    out = tmp_path / "never"
    assert main(train_args("lfw", path, out)) == 2
    assert "dataset.split" in one_error_line(capsys)
    assert not out.exists()


# --- Broken archives ----------------------------------------------------------------------------


def cub_image(root: Path, number: int) -> Path:
    """The image that line ``number`` of ``images.txt`` lists."""
    line = (root / "images.txt").read_text().splitlines()[number - 1]
    return root / "images" / line.split(maxsplit=1)[1]


def without_images_txt(root: Path) -> tuple[str, ...]:
    (root / "images.txt").unlink()
    return (str(root / "images.txt"), "does not exist")


def with_a_truncated_jpeg(root: Path) -> tuple[str, ...]:
    image = cub_image(root, 7)
    image.write_bytes(image.read_bytes()[:-200])
    return (str(image), "truncated")


def with_a_class_id_out_of_range(root: Path) -> tuple[str, ...]:
    labels = root / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[4] = "5 205"
    labels.write_text("\n".join(lines) + "\n")
    return (str(labels), "line 5", "class id 205 out of range")


@pytest.mark.parametrize(
    "break_archive",
    [without_images_txt, with_a_truncated_jpeg, with_a_class_id_out_of_range],
    ids=["no-images-txt", "truncated-jpeg", "class-id-out-of-range"],
)
def test_a_broken_cub_archive_exits_2_naming_the_problem_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    break_archive: Callable[[Path], tuple[str, ...]],
) -> None:
    root = write_cub(tmp_path / "archive", classes=CLASSES, per_class=PER_CLASS)
    fragments = break_archive(root)
    out = tmp_path / "never"
    assert main(train_args("cub", tmp_path / "archive", out)) == 2
    line = one_error_line(capsys)
    assert "dataset.path" in line
    position = 0
    for fragment in fragments:
        found = line.find(fragment, position)
        assert found >= 0, f"{fragment!r} not in (or out of order in) {line!r}"
        position = found + len(fragment)
    assert not out.exists()  # refused while reading the listing, before --out is created


def test_an_image_that_cannot_be_decoded_stops_the_console_script_without_a_summary(
    tmp_path: Path,
) -> None:
    """A file that passes the listing's checks (present, ends in a JPEG end marker) but is no
    image fails only when a ``DataLoader`` worker decodes it: the installed ``margin-tune``, as
    a user runs it, exits 2 with one line naming the file, and leaves in the output directory
    (made by then) nothing that a finished run writes.

    A real process: after a failed trial its loader workers outlive ``main`` until garbage
    collection, which would stall this test session instead.
    """
    root = write_cub(tmp_path / "archive", classes=CLASSES, per_class=PER_CLASS)
    image = cub_image(root, 1)
    image.write_bytes(b"not a JPEG " * 16 + b"\xff\xd9")
    out = tmp_path / "run"
    done = subprocess.run(
        [str(EXECUTABLE), *train_args("cub", root, out, "train.num_workers=2")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "dataset.path" in lines[0] and str(image) in lines[0], lines[0]
    assert "cannot decode" in lines[0], lines[0]
    left = {path.name for path in out.iterdir()} if out.exists() else set()
    assert left <= {LOCK_FILE, LOG_FILE, CONFIG_FILE, METRICS_FILE}, left
    if METRICS_FILE in left:
        assert read_metrics(out) == []  # the header alone: no epoch finished
