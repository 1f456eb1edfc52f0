"""Every MLflow tag key and value margin-tune writes, defined once and imported everywhere else.

Readers (``report``, ``ui``, ``sync``) and writers share these names; the module imports nothing,
so a reader needs neither Ray nor torch to know them. Metric names live below, in
:mod:`margin_tune.trainables.metric_names`.
"""

from __future__ import annotations

#: A trial's Ray Tune id, on its MLflow run: how a resumed or synced trial finds its run again.
TRIAL_ID_TAG = "margin_tune.trial_id"
#: The sweep a run belongs to (its parent and every trial).
SWEEP_ID_TAG = "margin_tune.sweep_id"
#: What a parent run is: ``sweep``, ``comparison``, ``ablation``.
KIND_TAG = "margin_tune.kind"
SWEEP_KIND = "sweep"
#: The first line of the error that ended a run (failed trials, failed sweeps).
ERROR_TAG = "margin_tune.error"
#: Where a run stands in a comparison; re-training runs carry :data:`FINAL_STAGE`.
STAGE_TAG = "margin_tune.stage"
FINAL_STAGE = "final"
ABLATION_STAGE = "ablation"
FINAL_TAGS = {STAGE_TAG: FINAL_STAGE}
#: How a trial ended (see :data:`TRIAL_STATUSES` in the sweep).
STATUS_TAG = "trial_status"
#: The class split a sweep or re-training ran on.
SPLIT_TAG = "split"
#: Trial statuses whose metrics are measurements: trained to the end, or stopped by collapse
#: detection and evaluated where they stopped.
MEASURED_STATUSES = ("completed", "collapsed")
