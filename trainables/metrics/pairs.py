"""The fixed set of pairs that verification metrics are measured on.

The pairs are chosen once per split and reused every epoch, so that epochs (and trials) are
compared on the same pairs and a change in a metric reflects the embedding, not the draw. Up to
``max_pairs`` that set is every pair of the split; above it, a seeded sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Fewest different-class pairs a sample may hold: at the FAR = 1e-3 operating point, 1e6
#: different-class pairs allow 1,000 false accepts, enough for TAR@FAR=1e-3 not to rest on a
#: handful of pairs (with 20,000 pairs, half different-class, it rested on 10).
MIN_NEGATIVE_PAIRS = math.ceil(1000 / 1e-3)

_INT32_MAX = int(np.iinfo(np.int32).max)


@dataclass(frozen=True)
class VerificationPairs:
    """Distinct unordered pairs of sample indices, each with ``first < second``.

    Attributes:
        first: Index of the first sample of each pair (int32 unless the split is huge).
        second: Index of the second sample of each pair, same dtype.
        same: Whether the two samples share a class.
    """

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray


def verification_pairs(labels: np.ndarray, max_pairs: int, seed: int) -> VerificationPairs:
    """Every pair of the split if it has at most ``max_pairs``, otherwise a seeded sample.

    All pairs: when the split has no more than ``max_pairs`` unordered pairs they are all
    returned, in ``numpy.triu_indices`` order, without any randomness.

    Sample: otherwise exactly ``max_pairs`` distinct pairs are drawn. Same-class pairs come
    first: all of them if they fit in ``max_pairs // 2``, else ``max_pairs // 2`` of them. The
    rest are different-class pairs, at least :data:`MIN_NEGATIVE_PAIRS` of them (since
    ``max_pairs >= 2 * MIN_NEGATIVE_PAIRS``), unless the split has fewer, in which case all of
    them are taken and same-class pairs fill up. Each group is drawn uniformly without
    replacement. Pairs are never enumerated here: samples are grouped by class, each pair gets a
    linear index, and indices are drawn and decoded, so memory stays O(N + max_pairs) even for
    ~100k samples.

    Args:
        labels: Class of each sample, shape ``(N,)``.
        max_pairs: Most pairs to score; at least ``2 * MIN_NEGATIVE_PAIRS``.
        seed: Seed of the draw; the same labels and seed give the same pairs. Unused when every
            pair is returned.

    Returns:
        The pairs; when sampled, same-class pairs first.

    Raises:
        ValueError: If ``labels`` is not one-dimensional or ``max_pairs`` is below
            ``2 * MIN_NEGATIVE_PAIRS``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    if max_pairs < 2 * MIN_NEGATIVE_PAIRS:
        raise ValueError(
            f"max_pairs must be >= {2 * MIN_NEGATIVE_PAIRS} so that a sample holds at least "
            f"{MIN_NEGATIVE_PAIRS} different-class pairs, got {max_pairs}"
        )
    n = len(labels)
    index_dtype = np.int32 if n <= _INT32_MAX else np.int64
    if n * (n - 1) // 2 <= max_pairs:
        first, second = _all_pairs(n, index_dtype)
        return VerificationPairs(first, second, labels[first] == labels[second])

    # Positions in class-sorted order; block_end[p] is where the class block of position p ends.
    order = np.argsort(labels, kind="stable")
    _, block_sizes = np.unique(labels[order], return_counts=True)
    block_end = np.repeat(np.cumsum(block_sizes), block_sizes)
    positions = np.arange(n)
    # Same-class partners of p after it: the rest of its block. Different-class partners after
    # it: everything past its block. Counting only later partners makes each pair unordered.
    same_counts = block_end - positions - 1
    diff_counts = n - block_end
    total_same, total_diff = int(same_counts.sum()), int(diff_counts.sum())

    n_same = min(max_pairs // 2, total_same)
    n_diff = min(max_pairs - n_same, total_diff)
    n_same = max_pairs - n_diff

    rng = np.random.default_rng(seed)
    same_p, same_q = _draw_pairs(rng, same_counts, positions + 1, n_same)
    diff_p, diff_q = _draw_pairs(rng, diff_counts, block_end, n_diff)
    first = order[np.concatenate([same_p, diff_p])]
    second = order[np.concatenate([same_q, diff_q])]
    same = np.concatenate([np.ones(n_same, dtype=bool), np.zeros(n_diff, dtype=bool)])
    return VerificationPairs(
        np.minimum(first, second).astype(index_dtype),
        np.maximum(first, second).astype(index_dtype),
        same,
    )


def _all_pairs(n: int, dtype: type[np.signedinteger]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)`` with ``i < j < n``, in ``numpy.triu_indices`` order.

    Built with ``repeat`` and ``cumsum`` in ``dtype``, without the ``n x n`` mask and int64
    copies of ``triu_indices``: 4.5 M pairs of 3,000 samples take a few tens of milliseconds.
    """
    if n < 2:
        empty = np.zeros(0, dtype=dtype)
        return empty, empty.copy()
    partners = np.arange(n - 1, 0, -1)  # pairs (i, j > i) for each i < n - 1
    first = np.repeat(np.arange(n - 1, dtype=dtype), partners)
    # second runs i + 1 .. n - 1 within the block of i: steps of 1, and at the start of block
    # i >= 1 a jump from n - 1 (end of block i - 1) down to i + 1. Every partial sum is a sample
    # index, so the cumulative sum cannot overflow ``dtype``.
    steps = np.ones(len(first), dtype=dtype)
    block_starts = np.cumsum(partners[:-1])
    steps[block_starts] = np.arange(2, n, dtype=dtype) - (n - 1)
    second = np.cumsum(steps, dtype=dtype)
    return first, second


def _draw_pairs(
    rng: np.random.Generator, counts: np.ndarray, first_partner: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``size`` distinct pairs ``(p, first_partner[p] + r)`` with ``0 <= r < counts[p]``.

    Drawing distinct linear indices and decoding them gives distinct pairs without rejection or
    deduplication, and ``Generator.choice`` without replacement needs memory only in proportion
    to ``size`` when the population is large.
    """
    ends = np.cumsum(counts)
    flat = rng.choice(int(ends[-1]), size=size, replace=False)
    p = np.searchsorted(ends, flat, side="right")
    q = first_partner[p] + flat - (ends[p] - counts[p])
    return p, q
