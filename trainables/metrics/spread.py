"""How spread out a set of embeddings is: the symptom of network collapse, measured.

A triplet network collapses when it maps every input onto (nearly) one point, where the loss is
stuck at the margin and no gradient separates anything. Two numbers show it: the mean pairwise
distance (unit-norm embeddings: in [0, 2], about sqrt(2) for directions spread evenly, 0 when all
coincide) and the share of the variance along the top principal direction (1/D for an isotropic
cloud, near 1 when the points have shrunk onto a line, the usual path to one point).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EmbeddingSpread:
    """Spread of one set of embeddings, in float64."""

    mean_pairwise_distance: float
    top_direction_variance: float


def embedding_spread(embeddings: torch.Tensor) -> EmbeddingSpread:
    """Mean Euclidean distance over all pairs, and the top principal direction's variance share.

    ``embeddings`` is (N, D) with N >= 2. A set with no variance at all (every point identical)
    has its variance share set to 1.0: it is as collapsed as a set can be.
    """
    points = embeddings.detach().double()
    mean_distance = torch.pdist(points).mean()
    centred = points - points.mean(dim=0)
    variances = torch.linalg.svdvals(centred).square()
    total = variances.sum()
    share = variances[0] / total if total > 0 else torch.ones((), dtype=points.dtype)
    return EmbeddingSpread(float(mean_distance), float(share))
