"""A verification protocol's fixed pairs in folds (LFW's ``pairs.txt``), scored as the field does.

LFW's protocol: ten folds of matched and mismatched pairs; for each fold, the distance threshold
that classifies the *other* folds' pairs best is applied to that fold, and the accuracy is
reported as the mean over folds with its standard error. The threshold is never fitted on the
pairs it is scored on. ROC-AUC, EER and TAR@FAR=1e-3 over all pairs are given beside it, with
the same score as every other verification metric here (minus the Euclidean distance of the
L2-normalised embeddings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from margin_tune.trainables.metrics.verification import verification_metrics


@dataclass(frozen=True)
class FoldResult:
    """One fold: its pairs, the threshold fitted on the other folds, and its accuracy."""

    fold: int
    pairs: int
    same_pairs: int
    distance_threshold: float
    """Pairs at most this far apart are called the same identity."""
    accuracy: float


@dataclass(frozen=True)
class ProtocolReport:
    """The folds' results and their summary."""

    folds: tuple[FoldResult, ...]
    accuracy_mean: float
    accuracy_std: float
    """Sample standard deviation over folds (ddof 1)."""
    accuracy_standard_error: float
    """``accuracy_std / sqrt(folds)``: what LFW's results table reports beside the mean."""
    overall: dict[str, float]
    """ROC-AUC, EER, TAR@FAR=1e-3 and the pair counts over every pair."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "accuracy_standard_error": self.accuracy_standard_error,
            **self.overall,
            "folds": [asdict(fold) for fold in self.folds],
        }


def best_score_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The score threshold (accept ``score >= t``) with the most pairs classified right.

    Every cut between two distinct scores is tried, and accepting none or all; a cut sits
    halfway between its neighbours, so it is a threshold a new pair is judged by too. Of equally
    good cuts the first (the strictest) is taken.
    """
    order = np.argsort(-scores, kind="stable")
    ranked, label = scores[order], same[order].astype(bool)
    count = len(ranked)
    true_accepts = np.concatenate([[0], np.cumsum(label)])
    false_accepts = np.concatenate([[0], np.cumsum(~label)])
    correct = true_accepts + (int((~label).sum()) - false_accepts)
    cuttable = np.ones(count + 1, dtype=bool)
    cuttable[1:count] = ranked[:-1] != ranked[1:]
    best = int(np.argmax(np.where(cuttable, correct, -1)))
    if best == 0:
        return float(ranked[0]) + 1.0 if count else 0.0
    if best == count:
        return float(ranked[-1])
    return float((ranked[best - 1] + ranked[best]) / 2)


def protocol_report(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> ProtocolReport:
    """Leave-one-fold-out accuracy over the protocol's folds, and the all-pairs metrics.

    Args:
        scores: Score of each pair (minus its embeddings' distance); higher means more alike.
        same: Whether each pair is one identity.
        fold: The protocol fold of each pair.

    Raises:
        ValueError: fewer than two folds, or a fold's complement without both kinds of pair.
    """
    names = np.unique(fold)
    if len(names) < 2:
        raise ValueError(f"the protocol needs at least 2 folds, got {len(names)}")
    same = same.astype(bool)
    results = []
    for name in names.tolist():
        held = fold == name
        rest_same = same[~held]
        if rest_same.all() or not rest_same.any():
            raise ValueError(f"the folds other than {name} lack matched or mismatched pairs")
        threshold = best_score_threshold(scores[~held], rest_same)
        accepted = scores[held] >= threshold
        results.append(
            FoldResult(
                fold=int(name),
                pairs=int(held.sum()),
                same_pairs=int(same[held].sum()),
                distance_threshold=-threshold,
                accuracy=float((accepted == same[held]).mean()),
            )
        )
    accuracies = np.array([result.accuracy for result in results])
    spread = float(accuracies.std(ddof=1))
    return ProtocolReport(
        folds=tuple(results),
        accuracy_mean=float(accuracies.mean()),
        accuracy_std=spread,
        accuracy_standard_error=spread / math.sqrt(len(results)),
        overall=verification_metrics(scores, same),
    )
