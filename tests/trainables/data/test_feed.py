"""Images read lazily from disk: the training and evaluation views, the loader workers, and a
trial trained, checkpointed and resumed on files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files_data import files_dataset, resumed_losses, trial_config, write_images
from PIL import Image

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.feed import FileFeed
from margin_tune.trainables.data.split import split_classes
from margin_tune.trainables.data.transforms import ImageView, crop_box
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.trial import Trial


@pytest.mark.parametrize("seed", range(50))
def test_a_random_crop_lies_inside_the_image_with_the_area_and_ratio_asked(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(8, 300)), int(rng.integers(8, 300)))
    left, top, width, height = crop_box(size, (0.3, 0.9), rng)
    assert left >= 0 and left + width <= size[0] and top >= 0 and top + height <= size[1]
    assert width > 0 and height > 0
    share = width * height / (size[0] * size[1])
    fallback = (left, top) == ((size[0] - width) // 2, (size[1] - height) // 2)
    # rounding to whole pixels moves the share by at most a pixel row and column
    slack = (width + height + 1) / (size[0] * size[1])
    assert fallback or 0.3 - slack <= share <= 0.9 + slack


def test_evaluation_resizes_the_shorter_side_then_crops_the_centre(tmp_path: Path) -> None:
    # 64 x 32: left half black, right half white; resize 20 makes it 40 x 20, the centre crop
    # of 16 keeps columns 12..27, the boundary at 20.
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    Image.fromarray(pixels).save(tmp_path / "half.png")
    view = ImageView.from_config(DatasetConfig(image_size=16, resize=20, normalize="none"))
    array = view.evaluation(tmp_path / "half.png")
    assert array.shape == (3, 16, 16) and array.dtype == np.float32
    assert np.all(array[:, :, :7] == 0.0) and np.all(array[:, :, 9:] == 1.0)
    normalised = ImageView.from_config(DatasetConfig(image_size=16, resize=20))
    expected = (0.0 - 0.485) / 0.229
    assert normalised.evaluation(tmp_path / "half.png")[0, 0, 0] == pytest.approx(expected)


def test_training_views_follow_their_generator(tmp_path: Path) -> None:
    files = write_images(tmp_path, classes=1, per_class=1)
    view = ImageView.from_config(DatasetConfig(image_size=16))
    path = tmp_path / files[0]
    first = view.training(path, np.random.default_rng(1))
    assert np.array_equal(first, view.training(path, np.random.default_rng(1)))
    others = [view.training(path, np.random.default_rng(seed)) for seed in range(2, 6)]
    assert any(not np.array_equal(first, other) for other in others)
    plain = replace(view, augment=False)
    assert np.array_equal(plain.training(path, np.random.default_rng(1)), plain.evaluation(path))


def test_workers_decode_the_same_batches_as_the_trial_process(tmp_path: Path) -> None:
    config = trial_config()
    dataset = files_dataset(tmp_path, config.dataset)
    split = split_classes(dataset.labels, config.dataset, dataset.given_test_classes)
    batches = [np.array([0, 3, 4, 1]), np.array([2, 2, 5, 0]), np.array([6, 7, 1, 3])]
    seen = {}
    for workers in (0, 2):
        worker_config = replace(config, train=replace(config.train, num_workers=workers))
        feed = FileFeed(dataset, split, torch.device("cpu"), worker_config)
        for _ in range(2):  # the second pass reuses the persistent workers
            training = [
                (inputs, list(positions))
                for inputs, positions in feed.training(iter(batches), seed=3, epoch=2)
            ]
            evaluation = list(feed.evaluation("val"))
        feed.close()
        seen[workers] = (training, evaluation)
    (train_0, eval_0), (train_2, eval_2) = seen[0], seen[2]
    assert [positions for _, positions in train_0] == [list(b) for b in batches]
    for (inputs_0, positions_0), (inputs_2, positions_2) in zip(train_0, train_2, strict=True):
        assert positions_0 == positions_2 and torch.equal(inputs_0, inputs_2)
    assert len(eval_0) == len(eval_2) and all(map(torch.equal, eval_0, eval_2))
    val_files = split.val_indices
    expected = torch.from_numpy(dataset.take(val_files))
    assert torch.equal(torch.cat(eval_0), expected)


def test_a_trial_on_files_resumes_exactly(tmp_path: Path) -> None:
    config = trial_config()
    dataset = files_dataset(tmp_path, config.dataset)
    straight = Trial(config, dataset).run()
    assert straight.history[0]["train_loss"] > 0  # a margin of 1.5: every epoch steps
    assert resumed_losses(config, dataset) == [row["train_loss"] for row in straight.history]
    with_workers = replace(config, train=replace(config.train, num_workers=2))
    assert [row["train_loss"] for row in Trial(with_workers, dataset).run().history] == [
        row["train_loss"] for row in straight.history
    ]


def test_the_given_split_tests_on_the_source_test_classes(tmp_path: Path) -> None:
    config = trial_config()
    dataset = files_dataset(tmp_path, config.dataset)
    split = split_classes(dataset.labels, config.dataset, dataset.given_test_classes)
    names = dataset.class_names
    assert [names[i] for i in split.test_classes] == ["c06", "c07"]
    assert len(split.val_classes) == 2 and len(split.train_classes) == 4
    assert not set(split.val_classes) & set(split.train_classes)
    result = Trial(config, dataset).run(evaluate_test=True)
    assert result.test_metrics is not None and 0 <= result.test_metrics["roc_auc"] <= 1
    assert set(result.reference_metrics) == {"untrained"}


def test_an_image_that_cannot_be_decoded_is_named(tmp_path: Path) -> None:
    config = trial_config()
    dataset = files_dataset(tmp_path, config.dataset)
    split = split_classes(dataset.labels, config.dataset, dataset.given_test_classes)
    broken = dataset.path(int(split.val_indices[0]))  # read at the end of every epoch
    broken.write_bytes(b"not a jpeg at all" + b"\xff\xd9")  # passes the end-marker check
    for workers in (0, 2):
        worker_config = replace(config, train=replace(config.train, num_workers=workers))
        with pytest.raises(ConfigError, match=f"cannot read image {broken}"):
            Trial(worker_config, dataset).run()
