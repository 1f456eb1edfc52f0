"""Every MLflow tag key and value margin-tune writes, defined once and imported everywhere else.

Readers (``report``, ``ui``, ``sync``) and writers share these names; the module imports nothing,
so a reader needs neither Ray nor torch to know them. Metric names live below, in
:mod:`margin_tune.trainables.metric_names`.

Every key margin-tune writes starts with ``margin_tune.``: a user's own tags, MLflow's
``mlflow.*`` tags and another tool's never meet ours. Before 0.2 some keys were bare
(``trial_status``, ``scheduler``, ``seed``...); :func:`tag_value` still reads them, so a store
written then reports as it did.
"""

from __future__ import annotations

from collections.abc import Mapping

#: A trial's Ray Tune id, on its MLflow run: how a resumed or synced trial finds its run again.
TRIAL_ID_TAG = "margin_tune.trial_id"
#: The sweep a run belongs to (its parent and every trial).
SWEEP_ID_TAG = "margin_tune.sweep_id"
#: What a parent run is: ``sweep``, ``comparison``, ``ablation``.
KIND_TAG = "margin_tune.kind"
SWEEP_KIND = "sweep"
COMPARISON_KIND = "comparison"
ABLATION_KIND = "ablation"
#: The first line of the error that ended a run (failed trials, failed sweeps).
ERROR_TAG = "margin_tune.error"
#: Where a run stands in a comparison; re-training runs carry :data:`FINAL_STAGE`.
STAGE_TAG = "margin_tune.stage"
FINAL_STAGE = "final"
ABLATION_STAGE = "ablation"
FINAL_TAGS = {STAGE_TAG: FINAL_STAGE}
#: How a trial ended (see :data:`TRIAL_STATUSES` in the sweep).
STATUS_TAG = "margin_tune.trial_status"
#: The class split a sweep or re-training ran on.
SPLIT_TAG = "margin_tune.split"
#: The comparison method a sweep tuned or a re-training run trained.
METHOD_TAG = "margin_tune.method"
#: The ablation cell a trial trained.
CELL_TAG = "margin_tune.cell"
#: A trial's margin scheduler, dataset and training seed: what the MLflow UI filters on.
SCHEDULER_TAG = "margin_tune.scheduler"
DATASET_TAG = "margin_tune.dataset"
SEED_TAG = "margin_tune.seed"
#: The code and data a run trained on: margin-tune's commit (where it runs from its own
#: checkout) and whether that tree had uncommitted changes, its version, the host, the
#: versions of Python and the libraries (``margin_tune.versions.<name>``).
GIT_COMMIT_TAG = "margin_tune.git_commit"
GIT_DIRTY_TAG = "margin_tune.git_dirty"
VERSION_TAG = "margin_tune.version"
HOST_TAG = "margin_tune.host"
#: The whole command line that opened the run, as a shell would take it back, store
#: credentials redacted: what a shared report prints as "the command that produced it".
COMMAND_TAG = "margin_tune.command"
VERSIONS_PREFIX = "margin_tune.versions."
#: A re-opened run (a resumed command) keeps its creator's provenance; what resumed it is
#: recorded under this prefix (``margin_tune.resumed_by.margin_tune.git_commit``...).
RESUMED_BY_PREFIX = "margin_tune.resumed_by."
DATASET_FINGERPRINT_TAG = "margin_tune.dataset_fingerprint"
#: What a finished sweep chose: the trial, its run, how many epochs it trained, its score.
BEST_TRIAL_TAG = "margin_tune.best_trial_id"
BEST_RUN_TAG = "margin_tune.best_run_id"
BEST_EPOCHS_TAG = "margin_tune.best_epochs"
BEST_SCORE_TAG = "margin_tune.best_tuning_score"
#: The chosen trial's tuned parameters, one tag each: ``margin_tune.best.<dotted.path>``.
BEST_CONFIG_PREFIX = "margin_tune.best."
#: An ablation's best cell (mean over seeds).
BEST_CELL_TAG = "margin_tune.best_cell"
#: How a registered model version was chosen (``compare --register-model``).
SELECTED_BY_TAG = "margin_tune.selected_by"
#: Why a run's network could not be logged as a model, or the winner not registered.
MODEL_ERROR_TAG = "margin_tune.model_error"
REGISTRY_ERROR_TAG = "margin_tune.registry_error"
#: Artifact paths: a comparison's tables and plots, and each re-training run's embedding map.
COMPARISON_ARTIFACTS = "comparison"
MAP_ARTIFACT = "embedding_map.png"
#: Trial statuses whose metrics are measurements: trained to the end, or stopped by collapse
#: detection and evaluated where they stopped.
MEASURED_STATUSES = ("completed", "collapsed")

#: The grid-point keys of a Tune config (a comparison's split and method, an ablation's
#: cell), and the tag each is recorded under.
GRID_POINT_TAGS = {"split": SPLIT_TAG, "method": METHOD_TAG, "cell": CELL_TAG}

#: The bare names some tags had before 0.2, read as a fallback.
PREVIOUS_NAMES = {
    STATUS_TAG: "trial_status",
    SPLIT_TAG: "split",
    METHOD_TAG: "method",
    CELL_TAG: "cell",
    SCHEDULER_TAG: "scheduler",
    DATASET_TAG: "dataset",
    SEED_TAG: "seed",
    GIT_COMMIT_TAG: "git_commit",
    DATASET_FINGERPRINT_TAG: "dataset_fingerprint",
    BEST_TRIAL_TAG: "best_trial_id",
    BEST_RUN_TAG: "best_run_id",
    BEST_EPOCHS_TAG: "best_epochs",
    BEST_SCORE_TAG: "best_tuning_score",
    BEST_CELL_TAG: "best_cell",
}


def tag_value(tags: Mapping[str, str], key: str, default: str = "") -> str:
    """A run's tag ``key``, or the bare name it had before 0.2, or ``default``."""
    if key in tags:
        return tags[key]
    previous = PREVIOUS_NAMES.get(key)
    return tags.get(previous, default) if previous is not None else default


def has_tag(tags: Mapping[str, str], key: str) -> bool:
    """Whether a run carries ``key`` under its name or the name it had before 0.2."""
    return key in tags or PREVIOUS_NAMES.get(key, key) in tags
