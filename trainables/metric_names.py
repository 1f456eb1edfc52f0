"""Every metric name a trial reports, defined once: what ``metrics.csv``, Ray Tune's results and
MLflow call the same quantity. Imports nothing, so a report can name metrics without torch.

An evaluation's names are bare (``roc_auc``); the classes it ran on prefix them: ``val_roc_auc``
on validation classes (:func:`on_validation`), ``test_roc_auc`` on test classes (:func:`on_test`).
Code names a metric through these constants, never by a string of its own: a test fails on a
metric-name literal anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# What one evaluation measures.
ROC_AUC = "roc_auc"
EER = "eer"
TAR_AT_FAR = "tar_at_far_1e-3"
RECALL_AT_1 = "recall_at_1"
MAP_AT_R = "map_at_r"
RECALL_PREFIX = "recall_at_"
#: What one evaluation measures on a set of classes, in this order.
EVALUATION_METRICS = (ROC_AUC, EER, TAR_AT_FAR, RECALL_AT_1, MAP_AT_R)
#: Metrics where lower is better; every other one is maximised.
LOWER_IS_BETTER = (EER,)

#: Counts an evaluation reports beside its metrics (what they rest on): pairs scored, and false
#: accepts at the FAR = 1e-3 operating point (what TAR@FAR=1e-3 rests on). Never optimised.
PAIRS = "pairs"
FALSE_ACCEPTS = "false_accepts_at_far_1e-3"
COUNT_KEYS = (PAIRS, FALSE_ACCEPTS)

VALIDATION_PREFIX = "val_"
TEST_PREFIX = "test_"


def recall_at(k: int) -> str:
    """Recall@K's name: ``recall_at_<k>`` (``recall_at_1`` is :data:`RECALL_AT_1`)."""
    return f"{RECALL_PREFIX}{k}"


def extra_recalls(ks: tuple[int, ...]) -> tuple[str, ...]:
    """The Recall@K names an evaluation reports beside :data:`EVALUATION_METRICS` for
    ``eval.recall_at`` = ``ks`` (every K but 1, which is always reported), in order."""
    return tuple(recall_at(k) for k in ks if k != 1)


def evaluation_metrics(ks: tuple[int, ...] = (1,)) -> tuple[str, ...]:
    """What one evaluation measures with Recall@K at ``ks``: :data:`EVALUATION_METRICS`, each
    further Recall@K after Recall@1."""
    at = EVALUATION_METRICS.index(RECALL_AT_1) + 1
    return (*EVALUATION_METRICS[:at], *extra_recalls(ks), *EVALUATION_METRICS[at:])


def metrics_of(columns: Iterable[str]) -> tuple[str, ...]:
    """The bare evaluation metrics a table of ``test_`` columns holds: :data:`EVALUATION_METRICS`
    and each Recall@K among ``columns`` (once, however often it repeats: the metric names of
    many runs), in :func:`evaluation_metrics` order."""
    ks = sorted(
        {
            int(name.removeprefix(TEST_PREFIX + RECALL_PREFIX))
            for name in columns
            if name.startswith(TEST_PREFIX) and is_recall_at(name)
        }
    )
    return evaluation_metrics(tuple(ks))


def is_recall_at(name: str) -> bool:
    """Whether ``name`` (bare or prefixed) is a Recall@K."""
    bare = name.removeprefix(VALIDATION_PREFIX).removeprefix(TEST_PREFIX)
    return bare.startswith(RECALL_PREFIX) and bare.removeprefix(RECALL_PREFIX).isdigit()


def on_validation(name: str) -> str:
    """An evaluation's ``name`` measured on validation classes: ``val_<name>``."""
    return VALIDATION_PREFIX + name


def on_test(name: str) -> str:
    """An evaluation's ``name`` measured on test classes: ``test_<name>``."""
    return TEST_PREFIX + name


def best_mode(metric: str) -> str:
    """``"min"`` for a metric where lower is better (EER, on any classes), else ``"max"``."""
    bare = metric.removeprefix(VALIDATION_PREFIX).removeprefix(TEST_PREFIX)
    return "min" if bare in LOWER_IS_BETTER else "max"


# What one epoch of training reports beside its validation evaluation.
EPOCH = "epoch"
MARGIN = "margin"
#: The rate the optimiser trained the epoch with (the trunk's, beside ``train.head_lr``).
LEARNING_RATE = "learning_rate"
EASY_RATIO = "easy_ratio"
SEMIHARD_RATIO = "semihard_ratio"
HARD_RATIO = "hard_ratio"
VALID_TRIPLETS = "valid_triplets"
TRAIN_LOSS = "train_loss"
LOSS_POSITIVE = "loss_positive"
LOSS_ENTROPY = "loss_entropy"
#: Quantiles of the effective margin δ = d(a,n) − d(a,p) over an epoch's triplets.
EFFECTIVE_MARGIN_LEVELS = (10, 50, 90)
EFFECTIVE_MARGIN_QUANTILES = tuple(
    f"effective_margin_p{level}" for level in EFFECTIVE_MARGIN_LEVELS
)
EPOCH_SECONDS = "epoch_seconds"
EMBEDDING_SPREAD = "embedding_spread"
TOP_DIRECTION_VARIANCE = "top_direction_variance"
COLLAPSED = "collapsed"

#: Columns of ``metrics.csv``, in order: what a tracker logs per epoch under the same names.
EPOCH_COLUMNS = (
    EPOCH,
    MARGIN,
    LEARNING_RATE,
    EASY_RATIO,
    SEMIHARD_RATIO,
    HARD_RATIO,
    VALID_TRIPLETS,
    TRAIN_LOSS,
    LOSS_POSITIVE,
    LOSS_ENTROPY,
    *EFFECTIVE_MARGIN_QUANTILES,
    *(on_validation(name) for name in EVALUATION_METRICS),
    *(on_validation(key) for key in COUNT_KEYS),
    EPOCH_SECONDS,
    EMBEDDING_SPREAD,
    TOP_DIRECTION_VARIANCE,
    COLLAPSED,
)


def epoch_columns(ks: tuple[int, ...] = (1,)) -> tuple[str, ...]:
    """:data:`EPOCH_COLUMNS` with the validation Recall@K of ``eval.recall_at`` = ``ks``."""
    return _with_recalls(EPOCH_COLUMNS, ks, on_validation)


def test_columns(ks: tuple[int, ...] = (1,)) -> tuple[str, ...]:
    """:data:`TEST_COLUMNS` with the test Recall@K of ``eval.recall_at`` = ``ks``."""
    return _with_recalls(TEST_COLUMNS, ks, on_test)


def _with_recalls(
    columns: tuple[str, ...], ks: tuple[int, ...], prefix: Callable[[str], str]
) -> tuple[str, ...]:
    at = columns.index(prefix(RECALL_AT_1)) + 1
    return (*columns[:at], *(prefix(name) for name in extra_recalls(ks)), *columns[at:])


#: Columns of EPOCH_COLUMNS that are counts, not metrics to optimise.
COUNT_COLUMNS = tuple(on_validation(key) for key in COUNT_KEYS)
#: Validation metrics a sweep may optimise.
TUNABLE_METRICS = tuple(on_validation(name) for name in EVALUATION_METRICS)
#: What each test evaluation of a re-training run reports: its metrics, then their counts.
TEST_COLUMNS = tuple(on_test(name) for name in (*EVALUATION_METRICS, *COUNT_KEYS))
