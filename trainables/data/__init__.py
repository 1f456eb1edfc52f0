"""Datasets: where samples come from, and the class-disjoint split they are scored on.

Every source is a function ``DatasetConfig -> Dataset`` registered under its config name
(``dataset.name``); :func:`load_dataset` looks it up.
"""

from __future__ import annotations

from collections.abc import Callable

from margin_tune.trainables.config import Config, DatasetConfig
from margin_tune.trainables.data.dataset import Dataset, Samples
from margin_tune.trainables.data.digits import load_digits
from margin_tune.trainables.data.files import ImageFiles
from margin_tune.trainables.data.glyphs import load_glyphs
from margin_tune.trainables.data.image_folder import load_image_folder
from margin_tune.trainables.data.layouts import load_cars, load_cub, load_lfw, load_sop
from margin_tune.trainables.data.npz import load_npz
from margin_tune.trainables.data.split import ClassSplit, split_classes
from margin_tune.trainables.data.synthetic import load_synthetic
from margin_tune.trainables.errors import ConfigError
from margin_tune.trainables.registry import Registry

__all__ = [
    "DATASETS",
    "GENERATOR_FIELDS",
    "ClassSplit",
    "Dataset",
    "ImageFiles",
    "Samples",
    "load_dataset",
    "recall_ks",
    "split_classes",
]

DATASETS = Registry[Callable[[DatasetConfig], Samples]]("dataset")
DATASETS.register("synthetic")(load_synthetic)
DATASETS.register("digits")(load_digits)
DATASETS.register("glyphs")(load_glyphs)
DATASETS.register("npz")(load_npz)
DATASETS.register("image_folder")(load_image_folder)
DATASETS.register("cub")(load_cub)
DATASETS.register("cars")(load_cars)
DATASETS.register("sop")(load_sop)
DATASETS.register("lfw")(load_lfw)

#: The ``dataset.*`` fields each built-in source without a file reads: what, beside the source's
#: name, a run records as where its data came from. A source read from ``dataset.path`` is
#: recorded by its path; an added source without a path by every field but the split's.
GENERATOR_FIELDS: dict[str, tuple[str, ...]] = {
    "synthetic": ("num_classes", "samples_per_class", "dim", "noise"),
    "glyphs": ("num_classes", "samples_per_class", "image_size"),
    "digits": (),
}


#: The Recall@K the literature reports on each benchmark (``eval.recall_at: null``).
LITERATURE_RECALL_AT: dict[str, tuple[int, ...]] = {
    "cub": (1, 2, 4, 8),
    "cars": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
}


def recall_ks(config: Config) -> tuple[int, ...]:
    """The K of the Recall@K a trial of ``config`` reports: ``eval.recall_at``, or the
    literature's for its dataset, or 1 alone."""
    if config.eval.recall_at is not None:
        return tuple(config.eval.recall_at)
    return LITERATURE_RECALL_AT.get(config.dataset.name, (1,))


def load_dataset(config: DatasetConfig) -> Samples:
    """Build the dataset ``config.name`` names.

    Raises:
        ConfigError: an unknown name (listing the known ones), or bad input to the source.
    """
    if config.name not in DATASETS:
        raise ConfigError(
            "dataset.name", f"unknown value {config.name!r}; allowed: {', '.join(DATASETS.names())}"
        )
    return DATASETS.get(config.name)(config)
