"""Ray Tune's ``OptunaSearch``, told what a trial ran: the epoch budget decides COMPLETE or
PRUNED, and a stored study that is ahead of Tune's snapshot is reconciled on resume.

Imported when a searcher is built (:mod:`~margin_tune.pipeline.search.searchers`), not when a
sweep's input is checked: it imports Ray Tune, which the driver then imports while Ray starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from margin_tune.pipeline.search.study import (
    OBSERVED,
    TUNE_TRIAL_ATTR,
    WARM_START_ATTR,
    SeedTrial,
)

logger = logging.getLogger(__name__)


class BudgetOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells a trial short of the epoch budget as PRUNED, and that
    resumes onto an RDB study that is ahead of it.

    Ray's ``OptunaSearch`` tells Optuna COMPLETE with the last reported value whenever a trial
    reported anything, also when ASHA stopped it at epoch 2 or it errored later: TPE would then
    model truncated values that the sweep never accepts as a winner. Here a trial's state is
    decided by what it ran: errored → FAIL, fewer than ``epochs`` epochs → PRUNED (with its last
    value as the intermediate value at the epoch it stopped, which TPE ranks below every
    complete trial), else COMPLETE.

    A stored study (``--storage``, or the output directory's journal file) outlives the
    driver, and Tune's snapshot of this searcher is older than the stored study when the driver is
    killed: a trial finished after the snapshot is finished in Optuna but not here, and Tune
    replays or re-runs it on ``resume``. Its second end, and any result it reports again, is
    ignored (Optuna refuses to update a finished trial: ``UpdateFinishedTrialError``), so the
    value first told stays. A trial that Optuna handed out after the snapshot is unknown to
    both Tune and this searcher and would stay RUNNING for ever: :meth:`reconcile` tells it FAIL.
    One handed out after the snapshot that also *finished* before the kill cannot be undone
    (Optuna never changes a finished trial): it stays in the study, as an observation the
    sampler may learn from, but Tune does not know it, plans a trial in its place, and the
    sweep's tracker closes its run as abandoned. :meth:`reconcile` lists those in
    :attr:`orphaned_trials` and says so; every study trial names its Tune trial in the user
    attribute :data:`TUNE_TRIAL_ATTR`, so a reader can tell the counted trials from them.
    Plain attributes only, so the searcher pickles with the experiment for ``resume``.
    """

    def __init__(
        self,
        *args: Any,
        epochs: int,
        seeded: tuple[SeedTrial, ...] = (),
        seed_mode: str = "add",
        **kwargs: Any,
    ) -> None:
        # Read by _setup_study, which OptunaSearch.__init__ calls.
        self.seeded = seeded
        self.seed_mode = seed_mode
        super().__init__(*args, **kwargs)
        self.budget_epochs = epochs
        #: Study trial number → Tune trial id, for finished study trials that Tune's snapshot
        #: did not know (found by :meth:`restore`).
        self.orphaned_trials: dict[int, str | None] = {}

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        self._add_seeded()

    def _add_seeded(self) -> None:
        """Put the earlier sweep's trials into the study, each once (also into a stored study
        opened again): ``add`` as finished trials (``add_trials`` runs nothing and spends none
        of the budget), ``enqueue`` as the next trials to suggest."""
        assert self._ot_study is not None
        present = {
            frozen.user_attrs.get(WARM_START_ATTR)
            for frozen in self._ot_study.get_trials(deepcopy=False)
        }
        if self.seed_mode == "enqueue":
            for seed in self.seeded:
                if seed.source not in present:
                    self._ot_study.enqueue_trial(
                        dict(seed.params), user_attrs={WARM_START_ATTR: seed.source}
                    )
            return
        self._ot_study.add_trials(
            [
                optuna.trial.create_trial(
                    state=TrialState.COMPLETE,
                    value=seed.value,
                    params=dict(seed.params),
                    distributions=dict(seed.distributions),
                    user_attrs={WARM_START_ATTR: seed.source},
                )
                for seed in self.seeded
                if seed.source not in present
            ]
        )

    def suggest(self, trial_id: str) -> dict | None:
        self._settle()
        known = trial_id in self._ot_trials
        suggestion = super().suggest(trial_id)
        if suggestion is not None and not known:
            self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._settle()
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)  # finished in the RDB before a kill

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        self._settle()
        if trial_id in self._completed_trials:
            return
        ran = int((result or {}).get("epoch", (result or {}).get("training_iteration", 0)))
        several = isinstance(self.metric, list)
        value: Any = (
            [(result or {}).get(metric) for metric in self.metric]
            if several
            else (result or {}).get(self.metric)
        )
        trial = self._ot_trials[trial_id]
        assert self._ot_study is not None  # set up before any trial was suggested
        try:
            if not error and ran >= self.budget_epochs:
                self._ot_study.tell(trial, value)  # a missing or NaN value: Optuna's FAIL
            else:
                # Optuna keeps no intermediate values for several objectives.
                if not error and not several and isinstance(value, int | float) and ran > 0:
                    # Tune hands the last result to on_trial_complete, not on_trial_result:
                    # report it, so that Optuna ranks the pruned trial by the value it was
                    # stopped at (Optuna ignores a step reported before).
                    trial.report(float(value), ran)
                state = TrialState.FAIL if error else TrialState.PRUNED
                self._ot_study.tell(trial, None, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told before the driver was killed: the first value stays
        except ValueError as error:
            # Optuna's tell refuses a finished trial with a ValueError of its own before it
            # reaches the storage ("Cannot tell a COMPLETE trial."): the same case.
            if not str(error).startswith("Cannot tell a"):
                raise
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # What the study holds beyond this snapshot is settled by reconcile(), given the
        # trials Tune restores; a search algorithm that does not call it (an experiment saved
        # by an older version) has it settled on first use, as if this snapshot's trials
        # were Tune's.
        self._reconciled = False

    def reconcile(self, known: Iterable[str], rerun: Iterable[str]) -> None:
        """Agree with the trials that Tune restores, whatever this searcher's snapshot says:
        it may be one snapshot older or newer than Tune's trials.

        ``known`` are the ids of every trial Tune restored, ``rerun`` those it runs again.
        A study trial owned by a known trial is that trial's again, also when this snapshot
        never saw it handed out. One whose Tune trial Tune does not know is told FAIL if still
        running and listed in :attr:`orphaned_trials` if finished. A trial that Tune runs again
        but that has no study trial (an in-memory study older than Tune's trials) runs without
        telling the study: it reports to nobody rather than ending the sweep with a KeyError.
        """
        self._reconciled = True
        if self._ot_study is None:  # nothing was ever suggested
            return
        known = set(known)
        for frozen in self._ot_study.get_trials(deepcopy=False):
            if WARM_START_ATTR in frozen.user_attrs and TUNE_TRIAL_ATTR not in frozen.user_attrs:
                continue  # added from an earlier sweep (or enqueued, not yet run): no Tune trial
            owner = frozen.user_attrs.get(TUNE_TRIAL_ATTR)
            if owner is not None and owner in known:
                if owner not in self._ot_trials:
                    self._ot_trials[owner] = optuna.Trial(self._ot_study, frozen._trial_id)
                continue
            if owner is not None:
                self._ot_trials.pop(owner, None)  # a trial Tune will never name again
            if frozen.state == TrialState.RUNNING:
                self._ot_study.tell(frozen.number, state=TrialState.FAIL)
            elif frozen.state in OBSERVED and frozen.number not in self.orphaned_trials:
                self.orphaned_trials[frozen.number] = owner
                logger.warning(
                    "Optuna trial %d (Tune trial %s) finished %s after Tune's last snapshot: "
                    "it stays in the study as an observation, is not counted by the sweep, "
                    "and its MLflow run is closed as abandoned",
                    frozen.number,
                    owner or "unknown",
                    frozen.state.name,
                )
        for trial_id in rerun:
            if trial_id not in self._ot_trials and trial_id not in self._completed_trials:
                logger.warning(
                    "Tune trial %s has no trial in the Optuna study %s; it runs again, and the "
                    "study does not learn from it",
                    trial_id,
                    self._ot_study.study_name,
                )
                self._completed_trials.add(trial_id)

    def _settle(self) -> None:
        """Reconcile with this snapshot's own trials if Tune's were never given."""
        if not getattr(self, "_reconciled", True):
            self.reconcile(known=self._ot_trials, rerun=())
