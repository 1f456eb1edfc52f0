"""Every metric name a trial reports, defined once: what ``metrics.csv``, Ray Tune's results and
MLflow call the same quantity. Imports nothing, so a report can name metrics without torch.
"""

from __future__ import annotations

#: What one evaluation measures on a set of classes, in this order; ``val_`` / ``test_``
#: prefixes say on which classes.
EVALUATION_METRICS = ("roc_auc", "eer", "tar_at_far_1e-3", "recall_at_1", "map_at_r")

#: Keys of an evaluation that are counts (what the metrics rest on), not metrics: pairs scored,
#: and false accepts at the FAR = 1e-3 operating point (what TAR@FAR=1e-3 rests on).
COUNT_KEYS = ("pairs", "false_accepts_at_far_1e-3")

#: Columns of ``metrics.csv``, in order: what a tracker logs per epoch under the same names.
EPOCH_COLUMNS = (
    "epoch",
    "margin",
    "easy_ratio",
    "semihard_ratio",
    "hard_ratio",
    "valid_triplets",
    "train_loss",
    "loss_positive",
    "loss_entropy",
    "effective_margin_p10",
    "effective_margin_p50",
    "effective_margin_p90",
    *(f"val_{name}" for name in EVALUATION_METRICS),
    *(f"val_{key}" for key in COUNT_KEYS),
    "epoch_seconds",
    "embedding_spread",
    "top_direction_variance",
    "collapsed",
)

#: Columns of EPOCH_COLUMNS that are counts, not metrics to optimise.
COUNT_COLUMNS = tuple(f"val_{key}" for key in COUNT_KEYS)
