"""An Optuna study as a sweep keeps it: where it lives, what its trials carry, how an earlier
sweep's trials enter it.

Light on purpose (Optuna, no Ray): the sweep's input check reads these names before Ray starts,
while :mod:`~margin_tune.pipeline.search.budget_search` and the searchers that Ray Tune drives
are imported only once the sweep runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import journal
from optuna.trial import TrialState

#: Optuna user attribute naming the Tune trial that a study trial was handed to: what ties a
#: study row to its MLflow run (whose trial-id tag holds the same id), and what tells, on resume,
#: which finished study trials no Tune trial owns any more.
TUNE_TRIAL_ATTR = "tune_trial_id"
#: Finished states that leave the sampler something to learn from (a FAIL leaves nothing).
OBSERVED = (TrialState.COMPLETE, TrialState.PRUNED)
#: Optuna user attribute of a study trial seeded from an earlier sweep (``--warm-start``): the
#: earlier sweep's trial it copies. An added one was never a Tune trial (resume leaves it be);
#: an enqueued one becomes the Tune trial that runs it.
WARM_START_ATTR = "warm_start_from"
#: How seeds enter a study: ``add`` as finished trials with the earlier values (free, and the
#: sampler takes those values as they are), ``enqueue`` as the first trials to run (their
#: params fixed, the rest sampled, their values measured here; they spend the budget).
SEED_MODES = ("add", "enqueue")


@dataclass(frozen=True)
class SeedTrial:
    """A finished trial of an earlier sweep, as a new study is seeded with it: the values of
    the parameters both spaces search (typed as the new space's distributions) and the value
    of the metric both sweeps optimise."""

    source: str
    params: Mapping[str, Any]
    #: Each parameter's distribution in the new space: what its trials will suggest from.
    distributions: Mapping[str, optuna.distributions.BaseDistribution]
    value: float


#: Seconds after which a journal's lock left by a killed driver is taken over. The driver is
#: the study's only writer (margin-tune holds its output directory's lock), so a lock older
#: than one append can only be stale; Optuna's default, 30 s, would stall every such resume.
JOURNAL_LOCK_GRACE_S = 5


def is_database_url(spec: str) -> bool:
    """A ``--storage`` that names an RDB (``sqlite:///…``, ``postgresql://…``), not a file."""
    return "://" in spec


def study_storage(spec: str | None) -> optuna.storages.BaseStorage | None:
    """Where a study lives: None in memory, an RDB URL (``sqlite:///…``, ``postgresql://…``)
    or the path of an Optuna journal file (what optuna-dashboard also opens by path)."""
    if not spec:
        return None
    if is_database_url(spec):
        return optuna.storages.RDBStorage(spec)
    lock = journal.JournalFileSymlinkLock(spec, grace_period=JOURNAL_LOCK_GRACE_S)
    return journal.JournalStorage(journal.JournalFileBackend(spec, lock_obj=lock))
