"""The fixed set of pairs that verification metrics are measured on.

The pairs are drawn once per split and reused every epoch, so that epochs (and trials) are compared
on the same pairs and a change in a metric reflects the embedding, not the draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VerificationPairs:
    """Distinct unordered pairs of sample indices, each with ``first < second``.

    Attributes:
        first: Index of the first sample of each pair.
        second: Index of the second sample of each pair.
        same: Whether the two samples share a class.
    """

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray


def sample_verification_pairs(labels: np.ndarray, num_pairs: int, seed: int) -> VerificationPairs:
    """Draws a seeded set of distinct pairs, half of them same-class where possible.

    At least ``num_pairs`` pairs are needed so that a false-accept rate of 1e-3 rests on at least
    ten false accepts (with the default 20,000). When the split has no more than ``num_pairs``
    unordered pairs, every pair is returned instead, since nothing would be gained by sampling.

    Otherwise ``min(num_pairs // 2, same-class pairs)`` same-class pairs are drawn and the rest
    are different-class pairs (or the other way round when different-class pairs run short), each
    group uniformly without replacement. Pairs are never enumerated: samples are grouped by class,
    each pair gets a linear index, and indices are drawn and decoded, so memory stays O(N +
    num_pairs) even for ~100k samples.

    Args:
        labels: Class of each sample, shape ``(N,)``.
        num_pairs: How many pairs to draw.
        seed: Seed of the draw; the same labels and seed give the same pairs.

    Returns:
        The pairs, same-class pairs first.

    Raises:
        ValueError: If ``labels`` is not one-dimensional or ``num_pairs`` is not positive.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be positive, got {num_pairs}")
    n = len(labels)
    if n * (n - 1) // 2 <= num_pairs:
        first, second = np.triu_indices(n, k=1)
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

    n_same = min(num_pairs // 2, total_same)
    n_diff = min(num_pairs - n_same, total_diff)
    n_same = num_pairs - n_diff

    rng = np.random.default_rng(seed)
    same_p, same_q = _draw_pairs(rng, same_counts, positions + 1, n_same)
    diff_p, diff_q = _draw_pairs(rng, diff_counts, block_end, n_diff)
    first = order[np.concatenate([same_p, diff_p])]
    second = order[np.concatenate([same_q, diff_q])]
    same = np.concatenate([np.ones(n_same, dtype=bool), np.zeros(n_diff, dtype=bool)])
    return VerificationPairs(np.minimum(first, second), np.maximum(first, second), same)


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
