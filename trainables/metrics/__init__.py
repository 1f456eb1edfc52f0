"""Evaluation metrics: verification on fixed pairs, leave-one-out retrieval, embedding spread."""

from margin_tune.trainables.metrics.evaluate import Evaluator, evaluate_raw_features
from margin_tune.trainables.metrics.pairs import (
    MIN_NEGATIVE_PAIRS,
    VerificationPairs,
    verification_pairs,
)
from margin_tune.trainables.metrics.retrieval import retrieval_metrics
from margin_tune.trainables.metrics.spread import EmbeddingSpread, embedding_spread
from margin_tune.trainables.metrics.verification import (
    RocCurve,
    equal_error_rate,
    pair_scores,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_metrics,
)

__all__ = [
    "MIN_NEGATIVE_PAIRS",
    "EmbeddingSpread",
    "Evaluator",
    "RocCurve",
    "VerificationPairs",
    "embedding_spread",
    "equal_error_rate",
    "evaluate_raw_features",
    "pair_scores",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verification_metrics",
    "verification_pairs",
]
