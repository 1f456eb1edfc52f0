"""What a re-trained network looks like on the test classes: its ROC curve and a 2-D map.

The tables say *how much* better one method is; these two pictures say *how*: where on the ROC
curve the methods part (at the strict false-accept rates verification is used at, or
everywhere), and whether the classes form tight, separated clusters. Both are computed in the
trial that trained the network, where the test embeddings already are, so the driver only
draws them.

- The ROC curve is kept at fixed false-accept rates (:data:`FAR_GRID`, log-spaced), so curves
  of several seeds and methods can be averaged point by point. Each point is the true-accept
  rate of the most lenient real threshold at or below that rate, as ``tar_at_far_1e-3`` is
  measured; rates below one false accept (``1 / different-class pairs``) are NaN.
- The map is a t-SNE (scikit-learn) of a few hundred test samples: :data:`MAP_CLASSES` test
  classes chosen with the evaluation's pair seed, so every method's map of a split shows the
  same classes, and up to :data:`MAP_SAMPLES_PER_CLASS` samples of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from margin_tune.trainables.metrics.verification import RocCurve

#: False-accept rates the ROC curve is kept at: 1e-5 .. 1, 10 points a decade.
FAR_GRID = np.logspace(-5, 0, 51)
#: Classes, and samples of each, in an embedding map: 10 tell apart by colour; 300 points.
MAP_CLASSES = 10
MAP_SAMPLES_PER_CLASS = 30
#: t-SNE iterations: scikit-learn's least (250 of early exaggeration, then the rest); 500
#: changed no map of these sizes visibly and costs twice the time.
TSNE_ITERATIONS = 250


@dataclass(frozen=True, eq=False)
class EmbeddingViews:
    """A network's ROC curve at :data:`FAR_GRID` and its 2-D map of test samples.

    Attributes:
        far: The false-accept rates (:data:`FAR_GRID`).
        tar: True-accept rate at each, NaN where the pairs cannot resolve the rate.
        map_xy: ``(n, 2)`` t-SNE coordinates of the mapped samples.
        map_labels: Class index (into the dataset's class names) of each mapped sample.
    """

    far: np.ndarray
    tar: np.ndarray
    map_xy: np.ndarray
    map_labels: np.ndarray

    def save(self, path: Path) -> Path:
        """An ``.npz`` of plain arrays, read back without unpickling (:meth:`load`)."""
        np.savez(path, far=self.far, tar=self.tar, map_xy=self.map_xy, map_labels=self.map_labels)
        return path

    @classmethod
    def load(cls, path: Path) -> EmbeddingViews:
        with np.load(path, allow_pickle=False) as arrays:
            return cls(
                far=arrays["far"],
                tar=arrays["tar"],
                map_xy=arrays["map_xy"],
                map_labels=arrays["map_labels"],
            )


def roc_at_grid(curve: RocCurve, grid: np.ndarray = FAR_GRID) -> np.ndarray:
    """True-accept rate of the most lenient threshold whose false-accept rate is at most each
    grid value; NaN below one false accept, a rate the pairs cannot measure."""
    points = np.searchsorted(curve.far, grid, side="right") - 1
    tar = curve.tar[points].astype(np.float64)
    tar[grid < 1.0 / curve.num_different] = np.nan
    return tar


def map_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Positions (into ``labels``) of the samples a map shows: :data:`MAP_CLASSES` classes drawn
    with ``seed``, the first :data:`MAP_SAMPLES_PER_CLASS` samples of each, sorted."""
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(classes, size=min(MAP_CLASSES, len(classes)), replace=False))
    picked = [np.flatnonzero(labels == c)[:MAP_SAMPLES_PER_CLASS] for c in chosen]
    return np.sort(np.concatenate(picked))


def tsne_map(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE coordinates of ``embeddings`` (Euclidean, PCA start, one thread, seeded)."""
    from sklearn.manifold import TSNE  # its import is slow; only re-trainings need it

    count = len(embeddings)
    if count < 3:
        return np.zeros((count, 2))
    tsne = TSNE(
        n_components=2,
        perplexity=min(30.0, (count - 1) / 3),
        init="pca",
        max_iter=TSNE_ITERATIONS,
        random_state=seed,
        n_jobs=1,
    )
    return np.asarray(tsne.fit_transform(np.asarray(embeddings, dtype=np.float64)))
