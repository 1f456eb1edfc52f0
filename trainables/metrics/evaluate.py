"""All evaluation metrics of one split, from its embeddings."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from margin_tune.trainables.metric_names import COUNT_KEYS
from margin_tune.trainables.metrics.pairs import verification_pairs
from margin_tune.trainables.metrics.retrieval import retrieval_metrics
from margin_tune.trainables.metrics.verification import pair_scores, verification_metrics

_NORM_TOLERANCE = 1e-3


class Evaluator:
    """Scores embeddings of one split with the verification and retrieval metrics.

    Verification (ROC-AUC, EER, TAR@FAR=1e-3) is computed on every unordered pair of the split
    when it has at most ``max_pairs`` of them (a split of 3,162 samples has 5 M), and otherwise
    on a seeded sample of ``max_pairs`` pairs holding at least 1 M different-class pairs, so
    that TAR@FAR=1e-3 rests on at least 1,000 false accepts (see
    :func:`~margin_tune.trainables.metrics.pairs.verification_pairs`). The pairs are chosen here,
    once, so
    every epoch and every call is measured on the same pairs. Retrieval (recall@1, MAP@R) uses
    every sample of the split as a query.

    Args:
        labels: Integer class of each sample of the split, shape ``(N,)``, in the order the
            embeddings will come in.
        max_pairs: Most verification pairs to score; at least 2,000,000.
        seed: Seed of the pair sample (unused when every pair is scored).
        chunk_size: Queries per chunk of the nearest-neighbour search, bounding its memory.
        recall_at: The K of Recall@K (``eval.recall_at``, resolved); Recall@1 always.

    Raises:
        ValueError: If the split has no same-class or no different-class pair, caught here
            rather than after the first epoch of training.
    """

    def __init__(
        self,
        labels: np.ndarray,
        max_pairs: int = 5_000_000,
        seed: int = 0,
        chunk_size: int = 1024,
        recall_at: tuple[int, ...] = (1,),
    ) -> None:
        self.labels = torch.as_tensor(np.asarray(labels))
        self.pairs = verification_pairs(self.labels.numpy(), max_pairs, seed)
        if self.pairs.same.all() or not self.pairs.same.any():
            raise ValueError("the split needs a class with two samples and two classes")
        self.chunk_size = chunk_size
        self.recall_at = recall_at

    def __call__(self, embeddings: torch.Tensor) -> dict[str, float]:
        """Computes the metrics of L2-normalised embeddings.

        Args:
            embeddings: L2-normalised embeddings, one row per sample, on any device; metrics are
                computed there in float32.

        Returns:
            ``roc_auc``, ``eer``, ``tar_at_far_1e-3``, ``recall_at_1`` and ``map_at_r``, then
            the counts ``pairs`` (pairs scored) and ``false_accepts_at_far_1e-3``
            (different-class pairs accepted at the threshold of ``tar_at_far_1e-3``).

        Raises:
            ValueError: If the shape does not match the labels, or a row is not finite or not of
                unit length (normalising here would hide a model that forgot to).
        """
        embeddings = self._checked(embeddings, allow_zero_rows=False)
        return self._metrics(embeddings)

    def _checked(self, embeddings: torch.Tensor, *, allow_zero_rows: bool) -> torch.Tensor:
        embeddings = embeddings.detach().float()
        if embeddings.ndim != 2 or len(embeddings) != len(self.labels):
            raise ValueError(
                f"expected embeddings of shape ({len(self.labels)}, D), "
                f"got {tuple(embeddings.shape)}"
            )
        norms = torch.linalg.vector_norm(embeddings, dim=1)
        valid = (norms - 1).abs() <= _NORM_TOLERANCE
        if allow_zero_rows:
            valid |= (embeddings == 0).all(dim=1)
        if not bool(valid.all()):
            raise ValueError("embeddings must be finite and L2-normalised")
        return embeddings

    def _metrics(self, embeddings: torch.Tensor) -> dict[str, float]:
        labels = self.labels.to(embeddings.device)
        verification = verification_metrics(pair_scores(embeddings, self.pairs), self.pairs.same)
        counts = {key: verification.pop(key) for key in COUNT_KEYS}
        return {
            **verification,
            **retrieval_metrics(embeddings, labels, self.chunk_size, self.recall_at),
            **counts,
        }


def evaluate_raw_features(evaluator: Evaluator, features: torch.Tensor) -> dict[str, float]:
    """Scores raw features (e.g. pixels) as if they were embeddings, as an untrained baseline.

    Each sample is flattened to a vector and L2-normalised, so the baseline is measured with the
    same distance as a trained model. An all-zero sample (a blank image) is legal data but has no
    direction: ``F.normalize`` leaves it the zero vector, and it is scored as such, at distance 1
    from every other sample and 0 from other all-zero samples. That is the only exception to the
    unit-norm check, and only here: mapping zero rows to some fixed unit vector instead would
    make them arbitrarily near some samples and far from others, while a trained model's
    embeddings must still be of unit length.
    """
    normalised = F.normalize(features.detach().flatten(start_dim=1).float(), dim=1)
    return evaluator._metrics(evaluator._checked(normalised, allow_zero_rows=True))
