"""A resumed experiment's search, made to agree with the trials that Tune restores.

Tune keeps an experiment in several files: the trials (``experiment_state-*.json``) and the
search's state (``basic-variant-state``, ``search_gen_state``, ``searcher-state``). It writes
them one after another into a staging folder and copies them to the output directory file by
file. A driver killed between two of those copies leaves the trials of one snapshot beside the
search state of the snapshot before or after. Tune trusts the trials: it re-queues each one
that has not terminated. A search that remembers otherwise breaks the resume (seen in CI: an
ablation at concurrency 1 waited for ever, because its grid still counted as running a trial
that the trials file had as finished, and so handed out no more).

The two search algorithms here read the same trials file when Tune restores them, and take
from it what the search must agree on:

* which trials count against the concurrency limit: every trial that Tune will run again;
* how many trials exist, which ends a sweep at its budget;
* which grid points have a trial, so that a grid hands out each point once;
* which study trials belong to a Tune trial, which the searcher is told through ``reconcile``
  (:class:`~margin_tune.pipeline.search.budget_search.BudgetOptunaSearch`).

Without a trials file (nothing was snapshotted) the saved search state stays as it is.

Tune offers no public way to do this: these classes set attributes of Ray 2.60's
``BasicVariantGenerator``, ``SearchGenerator`` and ``ConcurrencyLimiter``. The resume tests in
tests/pipeline/sweep/test_search_state.py run real experiments through them, so a Ray release
that changes those attributes fails there rather than in a user's resume.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.search_generator import SearchGenerator

_logger = logging.getLogger(__name__)

#: The file name Tune gives its trials snapshot, one per driver session; the newest name wins
#: (``_find_newest_experiment_checkpoint`` in ray/tune/execution/experiment_state.py).
TRIALS_GLOB = "experiment_state-*.json"
#: The one status of a restored trial that Tune does not run again (a resume continues the
#: unfinished and the errored ones).
TERMINATED = "TERMINATED"


def point_at_trials(search_alg: Any, experiment: Path) -> None:
    """Tell a resumable search algorithm where the trials file that Tune restores lies.

    Tune hands ``restore_from_dir`` its driver's staging folder, which on a long-lived Ray
    cluster can still hold an earlier driver's files of the same experiment, under newer names
    than the output directory's; Tune reads the trials from the output directory.
    """
    if isinstance(search_alg, ResumableGrid | ResumableSearch):
        search_alg.trials_dir = str(experiment)


def recorded_trials(directory: Path) -> dict[str, str] | None:
    """Trial id → status in the trials snapshot that Tune restores from ``directory``.

    None when there is none, or when it cannot be read: Tune would then not resume either.
    """
    snapshots = sorted(directory.glob(TRIALS_GLOB), key=lambda path: path.name)
    if not snapshots:
        return None
    try:
        state = json.loads(snapshots[-1].read_text())
        trials = (json.loads(trial) for trial, _ in state["trial_data"])
        return {str(trial["trial_id"]): str(trial["status"]) for trial in trials}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def rerun(trials: Mapping[str, str]) -> set[str]:
    """The restored trials that Tune runs again: all but the terminated ones."""
    return {trial_id for trial_id, status in trials.items() if status != TERMINATED}


class ResumableGrid(BasicVariantGenerator):
    """Tune's grid generator, limited to ``max_concurrent`` trials at a time, that on restore
    takes its running trials and its progress through the grid from the trials file.

    Its trial ids are its prefix and the grid point's index, so after a restore it walks the
    grid from the first point again and skips each id the trials file already holds: a point
    handed out just before the kill is not handed out twice, and one that the trials file
    never recorded is not lost.
    """

    #: Where the trials file lies (see :func:`point_at_trials`); else the folder restored from.
    trials_dir: str | None = None

    def __init__(self, max_concurrent: int) -> None:
        super().__init__(max_concurrent=max_concurrent)
        self._recorded: dict[str, str] = {}

    def restore_from_dir(self, dirpath: str) -> None:
        trials_dir = self.trials_dir or dirpath  # the saved state names an older one
        super().restore_from_dir(dirpath)
        self.trials_dir = trials_dir
        trials = recorded_trials(Path(trials_dir))
        if trials is None:
            return
        self._recorded = trials
        self._live_trials = rerun(trials)
        if len(self._iterators) != 1:  # a grid is one experiment; more are left as saved
            return
        old = self._iterators[0]
        # Tune's own (private) iterator class, started again from the grid's first point.
        fresh = type(old)(
            uuid_prefix=old.uuid_prefix,
            num_samples=old.num_samples,
            unresolved_spec=old.unresolved_spec,
            constant_grid_search=old.constant_grid_search,
            lazy_eval=old.lazy_eval,
            random_state=old.random_state,
        )
        self._iterators = [fresh]
        self._trial_generator = itertools.chain([], fresh)  # type: ignore[assignment]
        self._trial_iter = None
        self._finished = False

    def next_trial(self) -> Any:
        while True:
            live = set(self._live_trials)
            trial = super().next_trial()
            if trial is None or trial.trial_id not in self._recorded:
                return trial
            self._live_trials = live  # super() counted the skipped trial as live


class ResumableSearch(SearchGenerator):
    """Tune's wrapper of a searcher that on restore takes its trial count, its concurrency
    limiter's running trials and its searcher's trial ownership from the trials file."""

    #: Where the trials file lies (see :func:`point_at_trials`); else the folder restored from.
    trials_dir: str | None = None

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        trials = recorded_trials(Path(self.trials_dir or dirpath))
        if trials is None:
            return
        self._counter = len(trials)
        searcher: Any = self.searcher
        while hasattr(searcher, "searcher"):
            if isinstance(searcher, ConcurrencyLimiter):
                searcher.live_trials = rerun(trials)
                searcher.num_unfinished_live_trials = len(searcher.live_trials)
                searcher.cached_results = {}
            searcher = searcher.searcher
        reconcile = getattr(searcher, "reconcile", None)
        if reconcile is not None:
            reconcile(known=trials, rerun=rerun(trials))


def resumable_search(searcher: Searcher, max_concurrent: int) -> ResumableSearch:
    """``searcher`` limited to ``max_concurrent`` trials at a time, as a sweep's search
    algorithm (so ``TuneConfig.max_concurrent_trials`` stays unset)."""
    return ResumableSearch(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent))
