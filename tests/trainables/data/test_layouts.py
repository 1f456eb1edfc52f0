"""Readers of the benchmarks' native layouts, on tiny archives written in those layouts.

Each test writes real files (JPEGs from PIL, a ``cars_annos.mat`` from SciPy in the struct
layout the real one has, the index text files with the real headers and separators), so the
readers are checked against the formats themselves, not against a mock of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.files import ImageFiles
from margin_tune.trainables.data.layouts import load_cars, load_cub, load_lfw, load_sop
from margin_tune.trainables.errors import ConfigError

CUB_CLASSES = (
    "001.Black_footed_Albatross",
    "002.Laysan_Albatross",
    "003.Sooty_Albatross",
    "004.Groove_billed_Ani",
)
CAR_NAMES = (
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "Acura TL Sedan 2012",
    "Acura TL Type-S 2008",
)
CAR_CLASS_OF_IMAGE = (3, 1, 4, 2, 1, 3, 2, 4)
"""Class id of annotations 1..8: out of id order, as the real file's images are."""

SOP_TRAIN = (
    (1, 1, "bicycle_final/111085122871_0.JPG"),
    (2, 1, "bicycle_final/111085122871_1.JPG"),
    (3, 2, "bicycle_final/111265328556_0.JPG"),
    (4, 2, "bicycle_final/111265328556_1.JPG"),
)
SOP_TEST = (
    (1, 3, "chair_final/111095211633_0.JPG"),
    (2, 3, "chair_final/111095211633_1.JPG"),
    (3, 4, "chair_final/111148367066_0.JPG"),
    (4, 4, "chair_final/111148367066_1.JPG"),
)
"""``(image_id, class_id, path)``: two products in each file, two photos each."""

LFW_PEOPLE = {"Aaron_Peirsol": 2, "Abel_Pacheco": 2, "Akhmed_Zakayev": 3}
LFW_PAIRS = (
    "2\t1",
    "Aaron_Peirsol\t1\t2",
    "Abel_Pacheco\t1\tAkhmed_Zakayev\t3",
    "Akhmed_Zakayev\t1\t2",
    "Aaron_Peirsol\t2\tAbel_Pacheco\t2",
)
"""Two folds of one matched and one mismatched pair, tab-separated as in the real file."""


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_jpeg(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def write_lines(path: Path, lines: Sequence[str], ending: str = "\n") -> None:
    """The lines with ``ending`` after each, then blank lines, as editors and tools leave them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((ending.join(lines) + ending * 3).encode())


def truncate(path: Path, count: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:-count])


def assert_decodes(dataset: ImageFiles) -> None:
    batch = dataset.take(np.array([0]))
    assert batch.shape == (1, 3, 32, 32)
    assert batch.dtype == np.float32


def assert_config_error(
    load: Callable[[DatasetConfig], ImageFiles], config: DatasetConfig, *fragments: str
) -> None:
    """``load(config)`` raises a ConfigError on ``dataset.path`` whose message holds every
    fragment, in order."""
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert type(caught.value) is ConfigError
    assert caught.value.field == "dataset.path"
    message = str(caught.value)
    position = 0
    for fragment in fragments:
        found = message.find(fragment, position)
        assert found >= 0, f"{fragment!r} not in (or out of order in) {message!r}"
        position = found + len(fragment)


# --- CUB-200-2011 -------------------------------------------------------------------------------


def write_cub(parent: Path, rng: np.random.Generator) -> Path:
    """``parent/CUB_200_2011`` with 4 classes of 2 images; one file in Windows line endings."""
    root = parent / "CUB_200_2011"
    images: list[tuple[int, str, int]] = []
    for class_id, name in enumerate(CUB_CLASSES, start=1):
        bird = name.split(".", 1)[1]
        for number in (1, 2):
            relative = f"{name}/{bird}_{class_id:04d}_{number}.jpg"
            write_jpeg(root / "images" / relative, rng)
            images.append((len(images) + 1, relative, class_id))
    write_lines(root / "images.txt", [f"{image} {relative}" for image, relative, _ in images])
    labels = [f"  {image} {class_id} " for image, _, class_id in reversed(images)]
    write_lines(root / "image_class_labels.txt", labels, ending="\r\n")
    write_lines(root / "classes.txt", [f"{i} {name}" for i, name in enumerate(CUB_CLASSES, 1)])
    return root


@pytest.mark.parametrize("inner", [False, True], ids=["parent", "archive"])
def test_cub_reads_the_listing_and_the_literature_split(
    tmp_path: Path, rng: np.random.Generator, inner: bool
) -> None:
    root = write_cub(tmp_path, rng)
    path = root if inner else tmp_path
    dataset = load_cub(DatasetConfig(name="cub", path=str(path), split="given"))
    assert dataset.root == root
    assert dataset.name == "cub"
    assert len(dataset) == 8
    assert dataset.files[:3] == (
        "images/001.Black_footed_Albatross/Black_footed_Albatross_0001_1.jpg",
        "images/001.Black_footed_Albatross/Black_footed_Albatross_0001_2.jpg",
        "images/002.Laysan_Albatross/Laysan_Albatross_0002_1.jpg",
    )
    assert dataset.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert dataset.class_names == CUB_CLASSES
    assert dataset.test_classes is not None
    assert dataset.test_classes.tolist() == [2, 3]
    assert dataset.pairs is None
    assert_decodes(dataset)


def test_cub_without_images_txt_names_it(tmp_path: Path, rng: np.random.Generator) -> None:
    root = write_cub(tmp_path, rng)
    (root / "images.txt").unlink()
    assert_config_error(
        load_cub,
        DatasetConfig(name="cub", path=str(tmp_path)),
        str(root / "images.txt"),
        "does not exist",
    )


def test_cub_truncated_jpeg_is_named(tmp_path: Path, rng: np.random.Generator) -> None:
    root = write_cub(tmp_path, rng)
    image = root / "images/003.Sooty_Albatross/Sooty_Albatross_0003_2.jpg"
    truncate(image)
    assert_config_error(
        load_cub, DatasetConfig(name="cub", path=str(root)), str(image), "truncated"
    )


def test_cub_class_id_out_of_range_names_file_and_line(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = write_cub(tmp_path, rng)
    labels = root / "image_class_labels.txt"
    write_lines(labels, [f"{image} {1 + image % 4}" for image in range(1, 8)] + ["8 205"])
    assert_config_error(
        load_cub,
        DatasetConfig(name="cub", path=str(root)),
        str(labels),
        "line 8",
        "class id 205 out of range 1..4",
        "'8 205'",
    )


@pytest.mark.parametrize(
    ("file", "lines", "expected"),
    [
        ("images.txt", ["1 a.jpg", "x b.jpg"], ("line 2", "expected <image_id> <path>")),
        ("images.txt", ["1 a.jpg", "1 b.jpg"], ("line 2", "id 1 repeats line 1")),
        ("classes.txt", ["1 a", "2 b", "4 c"], ("line 3", "class id 4 out of range 1..3")),
    ],
)
def test_cub_bad_index_lines_are_located(
    tmp_path: Path,
    rng: np.random.Generator,
    file: str,
    lines: list[str],
    expected: tuple[str, ...],
) -> None:
    root = write_cub(tmp_path, rng)
    write_lines(root / file, lines)
    assert_config_error(
        load_cub, DatasetConfig(name="cub", path=str(root)), str(root / file), *expected
    )


def test_cub_image_without_class_is_named(tmp_path: Path, rng: np.random.Generator) -> None:
    root = write_cub(tmp_path, rng)
    labels = root / "image_class_labels.txt"
    write_lines(labels, [f"{image} {1 + (image - 1) // 2}" for image in range(1, 8)])
    assert_config_error(
        load_cub,
        DatasetConfig(name="cub", path=str(root)),
        str(labels),
        "no class for image id 8",
        "images.txt line 8",
    )


# --- Cars196 ------------------------------------------------------------------------------------


def write_cars(root: Path, rng: np.random.Generator, class_ids: Sequence[int]) -> Path:
    """``cars_annos.mat`` as the real one is built: a 1 x N struct array and a 1 x C cell."""
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    annotations = np.zeros((1, len(class_ids)), dtype=[(field, object) for field in fields])
    for index, class_id in enumerate(class_ids):
        relative = f"car_ims/{index + 1:06d}.jpg"
        write_jpeg(root / relative, rng)
        record = annotations[0, index]
        record["relative_im_path"] = relative
        for field, value in zip(fields[1:5], (2, 3, 38, 27), strict=True):
            record[field] = np.array([[value]], dtype=np.uint16)
        record["class"] = np.array([[class_id]], dtype=np.uint8)
        record["test"] = np.array([[index % 2]], dtype=np.uint8)
    names = np.empty((1, len(CAR_NAMES)), dtype=object)
    names[0, :] = CAR_NAMES
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": names})
    return root / "cars_annos.mat"


def test_cars_reads_the_annotations_and_the_literature_split(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    write_cars(tmp_path, rng, CAR_CLASS_OF_IMAGE)
    dataset = load_cars(DatasetConfig(name="cars", path=str(tmp_path), split="given"))
    assert dataset.name == "cars"
    assert len(dataset) == 8
    assert dataset.files == tuple(f"car_ims/{index:06d}.jpg" for index in range(1, 9))
    assert dataset.class_names == (
        "001 AM General Hummer SUV 2000",
        "002 Acura RL Sedan 2012",
        "003 Acura TL Sedan 2012",
        "004 Acura TL Type-S 2008",
    )
    assert dataset.labels.tolist() == [class_id - 1 for class_id in CAR_CLASS_OF_IMAGE]
    assert dataset.test_classes is not None
    assert dataset.test_classes.tolist() == [2, 3]
    assert_decodes(dataset)


def test_cars_class_id_out_of_range_names_the_annotation(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    mat = write_cars(tmp_path, rng, (1, 2, 5, 3))
    assert_config_error(
        load_cars,
        DatasetConfig(name="cars", path=str(tmp_path)),
        str(mat),
        "annotation 3",
        "class id 5 out of range 1..4",
    )


def test_cars_missing_field_and_file_are_named(tmp_path: Path, rng: np.random.Generator) -> None:
    mat = tmp_path / "cars_annos.mat"
    assert_config_error(
        load_cars, DatasetConfig(name="cars", path=str(tmp_path)), str(mat), "does not exist"
    )
    annotations = np.zeros((1, 2), dtype=[("relative_im_path", object)])
    annotations[0, 0]["relative_im_path"] = "car_ims/000001.jpg"
    annotations[0, 1]["relative_im_path"] = "car_ims/000002.jpg"
    scipy.io.savemat(mat, {"annotations": annotations, "class_names": np.array([["a", "b"]])})
    assert_config_error(
        load_cars, DatasetConfig(name="cars", path=str(tmp_path)), str(mat), "no field 'class'"
    )


# --- Stanford Online Products -------------------------------------------------------------------


def write_sop(parent: Path, rng: np.random.Generator) -> Path:
    root = parent / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path"
    for name, rows, super_class in (
        ("Ebay_train.txt", SOP_TRAIN, 1),
        ("Ebay_test.txt", SOP_TEST, 4),
    ):
        for _, _, relative in rows:
            write_jpeg(root / relative, rng)
        lines = [f"{image} {class_id} {super_class} {path}" for image, class_id, path in rows]
        write_lines(root / name, [header, *lines], ending="\r\n")
    return root


@pytest.mark.parametrize("inner", [False, True], ids=["parent", "archive"])
def test_sop_reads_both_files_and_their_split(
    tmp_path: Path, rng: np.random.Generator, inner: bool
) -> None:
    root = write_sop(tmp_path, rng)
    dataset = load_sop(DatasetConfig(name="sop", path=str(root if inner else tmp_path)))
    assert dataset.root == root
    assert dataset.name == "sop"
    assert len(dataset) == 8
    assert dataset.files == tuple(path for _, _, path in SOP_TRAIN + SOP_TEST)
    assert dataset.class_names == ("00001", "00002", "00003", "00004")
    assert dataset.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert dataset.test_classes is not None
    assert dataset.test_classes.tolist() == [2, 3]
    assert_decodes(dataset)


def test_sop_wrong_header_names_the_file(tmp_path: Path, rng: np.random.Generator) -> None:
    root = write_sop(tmp_path, rng)
    test_file = root / "Ebay_test.txt"
    write_lines(test_file, ["image_id class_id path", "1 3 chair_final/111095211633_0.JPG"])
    assert_config_error(
        load_sop,
        DatasetConfig(name="sop", path=str(root)),
        str(test_file),
        "line 1",
        "expected the header",
        "'image_id",
    )


def test_sop_class_in_both_files_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    root = write_sop(tmp_path, rng)
    test_file = root / "Ebay_test.txt"
    write_lines(
        test_file,
        [
            "image_id class_id super_class_id path",
            "1 3 4 chair_final/111095211633_0.JPG",
            "2 2 4 chair_final/111095211633_1.JPG",
        ],
    )
    assert_config_error(
        load_sop,
        DatasetConfig(name="sop", path=str(root)),
        str(test_file),
        "line 3",
        "class id 2 is also in",
        "line 4",
    )


def test_sop_malformed_line_is_located(tmp_path: Path, rng: np.random.Generator) -> None:
    root = write_sop(tmp_path, rng)
    train = root / "Ebay_train.txt"
    write_lines(train, ["image_id class_id super_class_id path", "1 one 1 bicycle_final/a.JPG"])
    assert_config_error(
        load_sop,
        DatasetConfig(name="sop", path=str(root)),
        str(train),
        "line 2",
        "'1 one 1 bicycle_final/a.JPG'",
    )


# --- LFW ----------------------------------------------------------------------------------------


def write_lfw(parent: Path, rng: np.random.Generator, pairs: Sequence[str] | None) -> Path:
    """``parent/lfw/<Name>/<Name>_<NNNN>.jpg`` and, unless None, ``parent/pairs.txt``."""
    identities = parent / "lfw"
    for name, count in LFW_PEOPLE.items():
        for number in range(1, count + 1):
            write_jpeg(identities / name / f"{name}_{number:04d}.jpg", rng)
    (identities / "Aaron_Peirsol" / "notes.txt").write_text("not an image, ignored")
    if pairs is not None:
        write_lines(parent / "pairs.txt", pairs, ending="\r\n")
    return identities


@pytest.mark.parametrize("inner", [False, True], ids=["parent", "identities"])
def test_lfw_reads_identities_and_pairs(
    tmp_path: Path, rng: np.random.Generator, inner: bool
) -> None:
    identities = write_lfw(tmp_path, rng, LFW_PAIRS)
    dataset = load_lfw(DatasetConfig(name="lfw", path=str(identities if inner else tmp_path)))
    assert dataset.root == identities
    assert dataset.name == "lfw"
    assert len(dataset) == 7
    assert dataset.files == (
        "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
        "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
        "Abel_Pacheco/Abel_Pacheco_0001.jpg",
        "Abel_Pacheco/Abel_Pacheco_0002.jpg",
        "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg",
        "Akhmed_Zakayev/Akhmed_Zakayev_0002.jpg",
        "Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg",
    )
    assert dataset.class_names == tuple(LFW_PEOPLE)
    assert dataset.labels.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert dataset.test_classes is None
    pairs = dataset.pairs
    assert pairs is not None
    assert pairs.first.tolist() == [0, 2, 4, 1]
    assert pairs.second.tolist() == [1, 6, 5, 3]
    assert pairs.same.tolist() == [True, False, True, False]
    assert pairs.fold.tolist() == [0, 0, 1, 1]
    assert_decodes(dataset)


def test_lfw_without_pairs_has_no_pairs_and_no_given_split(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    write_lfw(tmp_path, rng, None)
    dataset = load_lfw(DatasetConfig(name="lfw", path=str(tmp_path)))
    assert dataset.pairs is None
    assert len(dataset) == 7
    with pytest.raises(ConfigError, match=r"^dataset\.split: 'given'"):
        load_lfw(DatasetConfig(name="lfw", path=str(tmp_path), split="given"))


def test_lfw_pair_naming_a_missing_image_is_located(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    pairs = list(LFW_PAIRS)
    pairs[3] = "Akhmed_Zakayev\t1\t4"
    identities = write_lfw(tmp_path, rng, pairs)
    missing = identities / "Akhmed_Zakayev" / "Akhmed_Zakayev_0004.jpg"
    assert_config_error(
        load_lfw,
        DatasetConfig(name="lfw", path=str(tmp_path)),
        str(tmp_path / "pairs.txt"),
        "line 4",
        f"no image {missing}",
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (LFW_PAIRS[:4], ("has 4 lines", "needs 5")),
        ((*LFW_PAIRS[:2], "Abel_Pacheco\t1\t2", *LFW_PAIRS[3:]), ("line 3", "a mismatched pair")),
        (("ten\t300", *LFW_PAIRS[1:]), ("line 1", "expected the header", "'ten\\t300'")),
    ],
    ids=["short", "malformed", "header"],
)
def test_lfw_bad_pairs_file_is_located(
    tmp_path: Path, rng: np.random.Generator, lines: Sequence[str], expected: tuple[str, ...]
) -> None:
    write_lfw(tmp_path, rng, lines)
    assert_config_error(
        load_lfw,
        DatasetConfig(name="lfw", path=str(tmp_path)),
        str(tmp_path / "pairs.txt"),
        *expected,
    )
