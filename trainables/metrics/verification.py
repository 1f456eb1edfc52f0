"""Verification metrics: how well a distance threshold tells same-class pairs from the rest.

A pair's score is the negative Euclidean distance between its two embeddings, so a higher score
means "more likely the same class", and a pair is accepted when its score reaches a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from margin_tune.trainables.metric_names import EER, FALSE_ACCEPTS, PAIRS, ROC_AUC, TAR_AT_FAR
from margin_tune.trainables.metrics.pairs import VerificationPairs

#: Floats per gathered chunk in :func:`pair_scores` (4 MiB of float32).
_PAIR_CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class RocCurve:
    """The ROC operating points, as counts so that rates stay exact until they are reported.

    Point ``k`` accepts every pair scoring at least the ``k``-th highest distinct score; point 0
    accepts nothing. Tied scores share one threshold, so they are always accepted together.

    Attributes:
        false_accepts: Different-class pairs accepted at each point, starting at 0.
        true_accepts: Same-class pairs accepted at each point, starting at 0.
        num_same: Number of same-class pairs.
        num_different: Number of different-class pairs.
    """

    false_accepts: np.ndarray
    true_accepts: np.ndarray
    num_same: int
    num_different: int

    @property
    def far(self) -> np.ndarray:
        """False-accept rate (false-positive rate) at each point."""
        return self.false_accepts / self.num_different

    @property
    def tar(self) -> np.ndarray:
        """True-accept rate (true-positive rate) at each point."""
        return self.true_accepts / self.num_same


def pair_scores(embeddings: torch.Tensor, pairs: VerificationPairs) -> np.ndarray:
    """Scores each pair as minus the Euclidean distance between its embeddings.

    The embeddings are used as given: they are expected to be L2-normalised already, and
    normalising here would hide a model that forgot to.

    Args:
        embeddings: One row per sample, on any device.
        pairs: Pairs of row indices.

    Returns:
        One score per pair, as float64 on the CPU.
    """
    embeddings = embeddings.detach()
    first = torch.as_tensor(pairs.first, device=embeddings.device)
    second = torch.as_tensor(pairs.second, device=embeddings.device)
    distances = torch.empty(len(first), dtype=embeddings.dtype, device=embeddings.device)
    # Millions of pairs: gathering them all at once would take O(pairs x D) memory (GBs) and
    # run slower than cache-sized chunks; each distance is the same either way.
    chunk = max(1, _PAIR_CHUNK_ELEMENTS // max(1, embeddings.shape[1]))
    for start in range(0, len(first), chunk):
        stop = start + chunk
        difference = embeddings.index_select(0, first[start:stop])
        difference -= embeddings.index_select(0, second[start:stop])
        torch.linalg.vector_norm(difference, dim=1, out=distances[start:stop])
    return (-distances).double().cpu().numpy()


def roc_curve(scores: np.ndarray, same: np.ndarray) -> RocCurve:
    """Builds the ROC curve with one operating point per distinct score.

    Args:
        scores: Score of each pair; higher means more alike.
        same: Whether each pair is same-class.

    Returns:
        The curve, from accepting nothing to accepting everything.

    Raises:
        ValueError: If a score is not finite, or there are no same-class or no different-class
            pairs, which leaves the rates undefined.
    """
    same = np.asarray(same, dtype=bool)
    num_same = int(same.sum())
    num_different = len(same) - num_same
    if num_same == 0 or num_different == 0:
        raise ValueError(
            f"verification needs same- and different-class pairs, got {num_same} same-class "
            f"and {num_different} different-class"
        )
    scores = np.asarray(scores)
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite; NaN or inf would break ties arbitrarily")
    # Point k accepts the pairs scoring at least the k-th highest distinct score: count them in
    # each group by binary search. Sorting values (not argsorting pairs) keeps millions of pairs
    # fast, and the counts are the same exact integers.
    thresholds = np.unique(scores)[::-1]
    same_scores, different_scores = np.sort(scores[same]), np.sort(scores[~same])
    true_accepts = num_same - np.searchsorted(same_scores, thresholds, side="left")
    false_accepts = num_different - np.searchsorted(different_scores, thresholds, side="left")
    return RocCurve(
        false_accepts=np.concatenate([[0], false_accepts]),
        true_accepts=np.concatenate([[0], true_accepts]),
        num_same=num_same,
        num_different=num_different,
    )


def roc_auc(curve: RocCurve) -> float:
    """Area under the ROC curve, by the trapezoidal rule over the operating points.

    Trapezoids across tied scores count a tied same/different pair as half right, as the
    Mann-Whitney statistic does. The sum is taken over integer counts, so it is exact up to the
    final division.
    """
    width = np.diff(curve.false_accepts)
    height_twice = curve.true_accepts[1:] + curve.true_accepts[:-1]
    area_twice = int(np.dot(width, height_twice))
    return area_twice / (2 * curve.num_same * curve.num_different)


def equal_error_rate(curve: RocCurve) -> float:
    """The rate at which false accepts and false rejects are equally frequent.

    ``far - frr = far + tar - 1`` rises strictly from -1 to 1 along the curve (every point accepts
    at least one more pair), so it crosses zero once. If it crosses between two operating points,
    both rates are interpolated linearly along that ROC segment to where they meet, which is what
    a randomised choice between the two thresholds would achieve.
    """
    # far - frr scaled by num_same * num_different, so the crossing is found without rounding.
    gap = (
        curve.false_accepts * curve.num_same
        + curve.true_accepts * curve.num_different
        - curve.num_same * curve.num_different
    )
    k = int(np.searchsorted(gap, 0, side="left"))
    far = curve.far
    if gap[k] == 0:
        return float(far[k])
    t = -gap[k - 1] / (gap[k] - gap[k - 1])
    return float(far[k - 1] + t * (far[k] - far[k - 1]))


def _operating_point_at_far(curve: RocCurve, far: float = 1e-3) -> int:
    """Index of the most lenient operating point whose false-accept rate is at most ``far``.

    Point 0 (accepting nothing) always qualifies. The rates rise along the curve, so this is the
    last qualifying point, and the one with the highest true-accept rate among them.
    """
    return int(np.searchsorted(curve.far, far, side="right")) - 1


def tar_at_far(curve: RocCurve, far: float = 1e-3) -> float:
    """True-accept rate at the most lenient threshold whose false-accept rate is at most ``far``.

    No interpolation: the reported rate is one a real threshold achieves. Accepting nothing
    (rate 0) always qualifies, so the result is defined even for very few different-class pairs.
    """
    return float(curve.tar[_operating_point_at_far(curve, far)])


def verification_metrics(scores: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """ROC-AUC, EER and TAR at FAR = 1e-3 of scored pairs, and what the last one rests on.

    Args:
        scores: Score of each pair; higher means more alike.
        same: Whether each pair is same-class.

    Returns:
        ``roc_auc``, ``eer`` and ``tar_at_far_1e-3``; then two counts, as floats: ``pairs``,
        the number of pairs scored, and ``false_accepts_at_far_1e-3``, the different-class pairs
        accepted at the threshold ``tar_at_far_1e-3`` is measured at (exact, from the curve's
        counts). Few false accepts there mean a noisy ``tar_at_far_1e-3``.
    """
    curve = roc_curve(scores, same)
    point = _operating_point_at_far(curve, 1e-3)
    return {
        ROC_AUC: roc_auc(curve),
        EER: equal_error_rate(curve),
        TAR_AT_FAR: float(curve.tar[point]),
        PAIRS: float(curve.num_same + curve.num_different),
        FALSE_ACCEPTS: float(curve.false_accepts[point]),
    }
