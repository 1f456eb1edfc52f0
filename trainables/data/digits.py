"""scikit-learn's bundled handwritten digits: a small real dataset that needs no download."""

from __future__ import annotations

import numpy as np

from margin_tune.trainables.config import DatasetConfig
from margin_tune.trainables.data.dataset import Dataset

MAX_PIXEL = 16.0
"""The digits are 8x8 counts of 0..16 set pixels in a 4x4 block of the original bitmap."""


def load_digits(config: DatasetConfig) -> Dataset:
    """All 1797 digits as vectors of 64 features in [0, 1]; 10 classes named ``'0'``..``'9'``.

    A fixed benchmark: the shape fields of ``config`` (``num_classes``, ``samples_per_class``,
    ``dim``, ``noise``) do not apply, only the class split does.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # slow import, only when used

    bunch = sklearn_digits()
    return Dataset(
        features=(bunch.data / MAX_PIXEL).astype(np.float32),
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(name) for name in bunch.target_names),
        name="digits",
    )
