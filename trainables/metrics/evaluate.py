"""All evaluation metrics of one split, from its embeddings."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trainables.metrics.pairs import sample_verification_pairs
from trainables.metrics.retrieval import retrieval_metrics
from trainables.metrics.verification import pair_scores, verification_metrics

_NORM_TOLERANCE = 1e-3


class Evaluator:
    """Scores embeddings of one split with the verification and retrieval metrics.

    Built once per split: the verification pairs are drawn here, so every epoch and every call is
    measured on the same pairs.

    Args:
        labels: Integer class of each sample of the split, shape ``(N,)``, in the order the
            embeddings will come in.
        num_pairs: Verification pairs to draw (all pairs if the split has fewer).
        seed: Seed of the pair draw.
        chunk_size: Queries per chunk of the nearest-neighbour search, bounding its memory.

    Raises:
        ValueError: If the split has no same-class or no different-class pair, caught here
            rather than after the first epoch of training.
    """

    def __init__(
        self, labels: np.ndarray, num_pairs: int = 20_000, seed: int = 0, chunk_size: int = 1024
    ) -> None:
        self.labels = torch.as_tensor(np.asarray(labels))
        self.pairs = sample_verification_pairs(self.labels.numpy(), num_pairs, seed)
        if self.pairs.same.all() or not self.pairs.same.any():
            raise ValueError("the split needs a class with two samples and two classes")
        self.chunk_size = chunk_size

    def __call__(self, embeddings: torch.Tensor) -> dict[str, float]:
        """Computes ``roc_auc``, ``eer``, ``tar_at_far_1e-3``, ``recall_at_1`` and ``map_at_r``.

        Args:
            embeddings: L2-normalised embeddings, one row per sample, on any device; metrics are
                computed there in float32.

        Raises:
            ValueError: If the shape does not match the labels, or a row is not finite or not of
                unit length (normalising here would hide a model that forgot to).
        """
        embeddings = embeddings.detach().float()
        if embeddings.ndim != 2 or len(embeddings) != len(self.labels):
            raise ValueError(
                f"expected embeddings of shape ({len(self.labels)}, D), "
                f"got {tuple(embeddings.shape)}"
            )
        norms = torch.linalg.vector_norm(embeddings, dim=1)
        if not bool(((norms - 1).abs() <= _NORM_TOLERANCE).all()):
            raise ValueError("embeddings must be finite and L2-normalised")
        labels = self.labels.to(embeddings.device)
        return {
            **verification_metrics(pair_scores(embeddings, self.pairs), self.pairs.same),
            **retrieval_metrics(embeddings, labels, self.chunk_size),
        }


def evaluate_raw_features(evaluator: Evaluator, features: torch.Tensor) -> dict[str, float]:
    """Scores raw features (e.g. pixels) as if they were embeddings, as an untrained baseline.

    Each sample is flattened to a vector and L2-normalised, so the baseline is measured with the
    same distance as a trained model.
    """
    return evaluator(F.normalize(features.detach().flatten(start_dim=1).float(), dim=1))
