"""Retrieval metrics: leave-one-out nearest-neighbour search within the evaluated set.

Every sample is a query against all other samples, ranked by Euclidean distance. Queries whose
class has no other sample are skipped by both metrics, since no ranking could retrieve anything
for them (this is also what pytorch-metric-learning's ``AccuracyCalculator`` does).
"""

from __future__ import annotations

import torch

from margin_tune.trainables.metric_names import MAP_AT_R, RECALL_AT_1


def retrieval_metrics(
    embeddings: torch.Tensor, labels: torch.Tensor, chunk_size: int = 1024
) -> dict[str, float]:
    """Recall@1 and MAP@R of leave-one-out retrieval.

    MAP@R is the metric of Musgrave et al., "A Metric Learning Reality Check" (2020): with R the
    number of other samples of the query's class, AP@R is the sum of precision@i over the
    relevant ranks i <= R, divided by R. Unlike recall@1 it rewards a good ranking of the whole
    class, not just the nearest neighbour.

    Queries are processed ``chunk_size`` at a time so that memory stays
    O(``chunk_size`` x N) rather than O(N^2).

    Args:
        embeddings: One row per sample, shape ``(N, D)``.
        labels: Class of each sample, shape ``(N,)``, on the same device.
        chunk_size: Queries per chunk.

    Returns:
        ``recall_at_1`` and ``map_at_r``, both NaN if no class has two samples.
    """
    _, class_index, class_sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    relevant = class_sizes[class_index] - 1
    hits_at_1 = torch.zeros((), dtype=torch.float64, device=embeddings.device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=embeddings.device)
    for start in range(0, len(embeddings), chunk_size):
        stop = min(start + chunk_size, len(embeddings))
        r = relevant[start:stop]
        depth = int(r.max())
        if depth == 0:
            continue
        distances = torch.cdist(embeddings[start:stop], embeddings)
        rows = torch.arange(stop - start, device=embeddings.device)
        distances[rows, rows + start] = torch.inf
        neighbours = torch.topk(distances, depth, dim=1, largest=False).indices
        match = labels[neighbours] == labels[start:stop, None]
        ranks = torch.arange(1, depth + 1, device=embeddings.device)
        match &= ranks <= r[:, None]
        precision = match.cumsum(dim=1, dtype=torch.float64) / ranks
        answerable = r > 0
        hits_at_1 += match[answerable, 0].sum()
        ap_sum += ((precision * match).sum(dim=1)[answerable] / r[answerable]).sum()
    num_queries = int((relevant > 0).sum())
    if num_queries == 0:
        return {RECALL_AT_1: float("nan"), MAP_AT_R: float("nan")}
    return {
        RECALL_AT_1: hits_at_1.item() / num_queries,
        MAP_AT_R: ap_sum.item() / num_queries,
    }
