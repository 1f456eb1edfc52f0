"""One sweep: Ray Tune runs the trials, Optuna suggests, ASHA stops early, MLflow records.

:func:`~margin_tune.pipeline.sweep.plan.plan_sweep` checks every input and builds nothing that
lasts, and :func:`~margin_tune.pipeline.sweep.plan.sweep_cluster` starts (or joins) Ray;
``run_sweep`` then opens the sweep's parent run, fits the Tuner and returns the trials'
results. This module imports Ray Tune, MLflow and pandas: the planning module does not, so a
command imports this one while Ray comes up.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from margin_tune.pipeline.analysis.pareto import pareto_front
from margin_tune.pipeline.runtime.console import current
from margin_tune.pipeline.runtime.interrupts import (
    InterruptedRunError,
    fitting,
    unfinished_trial_ids,
)
from margin_tune.pipeline.search.searchers import (
    SearcherRequest,
    build_searcher,
)
from margin_tune.pipeline.search.space import apply_overrides
from margin_tune.pipeline.sweep.callback import (
    TRIAL_ID_TAG,
    SearchedConfig,
    TrackingCallback,
    TrialNames,
    bind_tracker,
    first_line,
    run_name,
    sync_results,
)
from margin_tune.pipeline.sweep.checkpoints import (
    KeepReadableExperimentState,
    PruneEndedTrialCheckpoints,
    prune_to_newest,
    repair_experiment_state,
)
from margin_tune.pipeline.sweep.inputs import TUNING_CONTEXTS, DatasetInputs
from margin_tune.pipeline.sweep.models import log_trained_models
from margin_tune.pipeline.sweep.plan import SweepOptions, SweepPlan
from margin_tune.pipeline.sweep.population import (
    SCHEDULE_FILE,
    learned_schedule,
    param_space,
    perturbed,
    population_scheduler,
    replay_config,
)
from margin_tune.pipeline.sweep.progress import TrialProgress
from margin_tune.pipeline.sweep.search_state import point_at_trials, resumable_search
from margin_tune.pipeline.sweep.session import ray_ready
from margin_tune.pipeline.sweep.trainable import CHECKPOINT_FILE, run_tune_trial
from margin_tune.pipeline.sweep.warm_start import WarmStart
from margin_tune.pipeline.sweep.warm_up import WarmEndOfRunImports
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.pipeline.tracking.vocabulary import (
    BEST_CONFIG_PREFIX,
    BEST_EPOCHS_TAG,
    BEST_RUN_TAG,
    BEST_SCORE_TAG,
    BEST_TRIAL_TAG,
    DATASET_FINGERPRINT_TAG,
    DATASET_TAG,
    KIND_TAG,
    SWEEP_ID_TAG,
    SWEEP_KIND,
)
from margin_tune.trainables.config import Config, flatten
from margin_tune.trainables.metric_names import (
    EASY_RATIO,
    MARGIN,
    TUNABLE_METRICS,
    VALIDATION_PREFIX,
)
from margin_tune.trainables.parts import added_parts

_logger = logging.getLogger(__name__)

EXPERIMENT_DIR = "tune"
#: How a trial can end (see :func:`margin_tune.pipeline.sweep.callback.trial_status`).
TRIAL_STATUSES = ("completed", "early_stopped", "collapsed", "failed")
#: Tune snapshots its experiment state (what ``Tuner.restore`` reads) at most every 10 s by
#: default; a trial that started and finished after the last snapshot is run again on resume,
#: under a new trial id (seen here: 2 of 6 finished trials re-run after a SIGKILL). A period of
#: 1 s leaves that window only to trials shorter than a second; a trial the snapshot knows
#: continues from its last snapshotted checkpoint. Snapshotting on every controller step (period
#: 0, ten times a second) cost the driver 8 s of CPU in a 65-s sweep, a core the trials share.
#: ``TUNE_GLOBAL_CHECKPOINT_S`` set by the user wins.
SNAPSHOT_PERIOD_S = "1"


#: Tune settings read from the environment when ``fit`` starts; a user's own value wins.
#: Tune's CSV and TensorBoard loggers duplicate what MLflow records and cost the driver CPU;
#: only ``result.json`` (what ``ResultGrid`` reads back) is kept: pass ``JsonLoggerCallback``.
TUNE_ENVIRONMENT = {
    "TUNE_GLOBAL_CHECKPOINT_S": SNAPSHOT_PERIOD_S,
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


@contextmanager
def tune_environment() -> Iterator[None]:
    """Our Tune settings for one ``fit``, then the environment as it was (no leak to others)."""
    wanted = dict(TUNE_ENVIRONMENT)
    if current().ray_verbose == 0:
        # Tune's new console output prints an experiment header even at verbose=0; its legacy
        # engine (RAY_AIR_NEW_OUTPUT=0, in Ray Tune's environment-variable docs) prints nothing
        # at verbosity 0. Our progress lines take its place; -v keeps the new engine.
        wanted["RAY_AIR_NEW_OUTPUT"] = "0"
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@dataclass
class SweepResult:
    """Per-trial rows (config values, status, last metrics) and the best trial.

    ``best`` is the row of the best trial among those that trained the whole epoch budget
    (status ``completed``), empty when none did: a trial stopped early by ASHA, collapsed or
    failed is never the winner, since its last value was measured at fewer epochs than the
    re-training will run.
    """

    plan: SweepPlan
    parent_run_id: str
    trials: pd.DataFrame
    best: dict[str, Any]
    histories: dict[str, pd.DataFrame]
    errors: list[str] = field(default_factory=list)
    """One line per failed trial: its id, the error's last line and where its files are."""
    schedule: pd.DataFrame | None = None
    """A population's learned schedule: the best member's μ and values per epoch, with the
    trial that trained each epoch (``tune --population``); None otherwise."""

    @property
    def out(self) -> Path:
        """The sweep's output directory."""
        return self.plan.out

    @property
    def ok(self) -> bool:
        """Some trial trained the whole budget (else the CLI exits 1)."""
        return bool(self.best)

    @property
    def best_config(self) -> Config | None:
        """The base config with the best trial's searched values; None when no trial won. For a
        population, the config that replays its learned :attr:`schedule`
        (:func:`~margin_tune.pipeline.sweep.population.replay_config`)."""
        if not self.best:
            return None
        searched = {
            key.removeprefix("config."): value
            for key, value in self.best.items()
            if key.startswith("config.") and value == value  # NaN: a value this trial lacks
        }
        config = apply_overrides(self.plan.base, searched)
        return config if self.schedule is None else replay_config(config, self.schedule)

    @property
    def summary(self) -> str:
        """``4 trials: 2 completed, 1 early-stopped, 0 collapsed, 1 failed``."""
        budget = self.budget
        counts = ", ".join(
            f"{budget[f'trials_{name}']} {name.replace('_', '-')}" for name in TRIAL_STATUSES
        )
        warm = self.plan.warm_start
        seeded = ""
        if warm is not None and warm.mode == "add":
            seeded = f"; {budget['trials_seeded']} more seeded from {warm.source} (not run)"
        elif warm is not None:
            seeded = f"; the first {budget['trials_seeded']} seeded from {warm.source}"
        return f"{budget['trials']} trials: {counts}{seeded}"

    @property
    def pareto(self) -> pd.DataFrame:
        """With ``--objectives``: the completed trials no other completed trial beats on every
        objective, best first by the first; empty for a single-metric sweep."""
        objectives = self.plan.options.objective_list
        return pareto_front(self.trials, objectives) if objectives else self.trials.iloc[0:0]

    @property
    def budget(self) -> dict[str, Any]:
        """The tuning budget as spent: trials, trial-epochs trained, searcher, dimensions."""
        return realised_budget(self.plan, self.trials)


def realised_budget(plan: SweepPlan, trials: pd.DataFrame) -> dict[str, Any]:
    """What a sweep actually spent, for the tables: a budget of 16 trials that ASHA cut to 60
    trial-epochs is not the budget of 16 full trials. ``trials_seeded``: the earlier sweep's
    trials the study started with (``--warm-start``), which ran nothing here."""
    status = trials["status"] if "status" in trials else pd.Series(dtype=str)
    return {
        "trials": len(trials),
        **{f"trials_{name}": int((status == name).sum()) for name in TRIAL_STATUSES},
        "trials_seeded": len(plan.warm_start.seeded) if plan.warm_start is not None else 0,
        "trial_epochs": int(trials["epochs"].sum()) if "epochs" in trials else 0,
        "searcher": searcher_name(plan.options),
        "dimensions": len(plan.space.searched),
    }


def searcher_name(options: SweepOptions) -> str:
    """What chose the trials' configs: the searcher, or ``pbt`` for a population."""
    return "pbt" if options.population else options.searcher


def restored_or_new(experiment: Path, trainable: Any, new: Callable[[], tune.Tuner]) -> tune.Tuner:
    """The experiment at ``experiment`` restored if Tune left one there, else ``new()``.

    On restore, finished trials stay finished, unfinished and errored ones continue from their
    last checkpoint, and a searcher's state (Optuna's history) comes back with the experiment.
    """
    if tune.Tuner.can_restore(str(experiment)):
        for name in repair_experiment_state(experiment):
            _logger.warning(
                "%s was cut off when the driver was killed; resuming from the copy of its last "
                "complete write (a trial that ended since then runs again)",
                name,
            )
        restored = tune.Tuner.restore(
            str(experiment), trainable, resume_unfinished=True, resume_errored=True
        )
        _follow_console(restored)
        internal = getattr(restored, "_local_tuner", None)
        tune_config = getattr(internal, "_tune_config", None)
        point_at_trials(getattr(tune_config, "search_alg", None), experiment)
        return restored
    return new()


def _follow_console(tuner: tune.Tuner) -> None:
    """Give a restored Tuner this command's Ray verbosity, not the one pickled with it.

    ``Tuner.restore`` takes no ``RunConfig``: the one saved by the first run comes back, with
    its ``verbose``, so ``resume -v`` would stay silent. The restored run config is the object
    ``TunerInternal.get_run_config`` returns (ray/tune/impl/tuner_internal.py); where that
    internal is missing, the saved verbosity stays.
    """
    internal = getattr(tuner, "_local_tuner", None)
    run_config = internal.get_run_config() if internal is not None else None
    if run_config is not None and hasattr(run_config, "verbose"):
        run_config.verbose = current().ray_verbose


def run_sweep(
    plan: SweepPlan,
    tracker: Tracker,
    *,
    parent_run_id: str | None = None,
    function: Callable[..., None] = run_tune_trial,
    tags: Mapping[str, str] | None = None,
) -> SweepResult:
    """Run the planned sweep inside an active Ray session; returns when every trial ended.

    ``function`` is what each trial runs, given ``run_tune_trial``'s arguments; the bookkeeping
    benchmark (P6) swaps in one that trains nothing, to time the machinery alone. ``tags`` are
    added to the sweep's run (a comparison's split and method).
    """
    options, space, base = plan.options, plan.space, plan.base
    sweep_run = tracker.sweep_run(
        name=plan.name,
        sweep_id=plan.sweep_id,
        parent_run_id=parent_run_id,
        params={
            "space": space.name,
            "trials": options.trials,
            "searcher": searcher_name(options),
            "metric": space.metric,
            "mode": space.mode,
            "epochs": base.train.epochs,
            "concurrency": options.concurrency,
            "asha": options.early_stopping and not options.population,
            "asha.grace_period": options.grace_period,
            "asha.reduction_factor": options.reduction_factor,
            "seed": options.seed,
            **({"objectives": options.objectives} if options.objectives else {}),
            **(
                {
                    "population": options.population,
                    "pbt.perturbation_interval": options.perturbation_interval,
                    "pbt.perturbed": ",".join(p.path for p in perturbed(space)),
                }
                if options.population
                else {}
            ),
            **_warm_start_params(plan.warm_start),
        },
        tags={
            SWEEP_ID_TAG: plan.sweep_id,
            KIND_TAG: SWEEP_KIND,
            DATASET_TAG: base.dataset.name,
            DATASET_FINGERPRINT_TAG: plan.dataset.fingerprint(),
            **(tags or {}),
        },
    )
    # Digest and class split once per sweep; every trial run logs the same records.
    inputs = DatasetInputs.build(plan.dataset, [base.dataset], TUNING_CONTEXTS)
    tracker.log_inputs(sweep_run, inputs.for_config(base))
    if space.source is not None:
        tracker.log_artifact(sweep_run, str(space.source), artifact_path="space")
    searcher = (
        None
        if options.population
        else build_searcher(
            options.searcher,
            SearcherRequest(
                space=space,
                seed=options.seed,
                study_name=f"margin-tune-{plan.name}-{plan.sweep_id}",
                storage=options.storage,
                start=flatten(base.to_dict()),
                epochs=base.train.epochs,
                trials=options.trials,
                seeded=plan.warm_start.seeded if plan.warm_start is not None else (),
                seed_mode=plan.warm_start.mode if plan.warm_start is not None else "add",
                objectives=options.objective_list,
            ),
        )
    )
    if plan.warm_start is not None:
        for line in plan.warm_start.lines(plan.dataset.fingerprint()):
            current().say(line)
    scheduler: TrialScheduler | None = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=base.train.epochs,
            grace_period=options.grace_period,
            reduction_factor=options.reduction_factor,
        )
        if options.early_stopping
        else None
    )
    search_alg: Any = None if searcher is None else resumable_search(searcher, options.concurrency)
    space_of_trials: dict[str, Any] | None = None
    population: dict[str, Any] = {}
    if options.population:
        # PBT is the trial scheduler (no ASHA), and Tune draws first configs itself.
        scheduler = population_scheduler(space, options.perturbation_interval, options.seed)
        # Every member exists from the start (no max_concurrent): a synchronous population
        # pauses the members that reached the interval, freeing their resources, until the
        # others get there. A cap on live trials would hold the rest back for ever, and the
        # first members would run to the end alone.
        search_alg = BasicVariantGenerator(random_state=options.seed)
        space_of_trials = param_space(space)
        population = {
            "checkpoint_every_epochs": options.perturbation_interval,
            "track_schedule": True,
        }
    ray_ready()  # the dataset goes into Ray's object store
    trainable = tune.with_resources(
        tune.with_parameters(
            function,
            base=base.to_dict(),
            dataset=plan.dataset,
            cpus=options.cpus_per_trial,
            checkpoint_interval_s=options.checkpoint_interval_s,
            parts=added_parts(),
            **population,
        ),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    experiment = plan.out.resolve() / EXPERIMENT_DIR
    names = TrialNames(SearchedConfig(base), {})
    tuner = restored_or_new(
        experiment,
        trainable,
        lambda: tune.Tuner(
            trainable,
            param_space=space_of_trials,
            tune_config=tune.TuneConfig(
                metric=space.metric,
                mode=space.mode,
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=options.trials,
                # A member that PBT restarts as a copy of another starts in a fresh actor, so
                # its context (the trial id its schedule rows name) is its own; reusing
                # actors there would need Trainable.reset_config, which a function has not.
                reuse_actors=not options.population,
                trial_name_creator=names.name,
                trial_dirname_creator=names.dirname,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT_DIR,
                storage_path=str(plan.out.resolve()),
                # A population member ends at its last epoch: Tune checks this before the
                # scheduler, so PBT never exploits then (a copy made at the last epoch would
                # train nothing and end with its donor's result and config as its own).
                stop={"training_iteration": base.train.epochs} if options.population else None,
                callbacks=[
                    TrackingCallback(sweep_run, SearchedConfig(base), inputs=inputs),
                    TrialProgress(
                        plan.name, options.trials, SearchedConfig(base), space.metric, space.mode
                    ),
                    # A paused population member may still copy an ended member's checkpoint
                    # of an earlier epoch: those are pruned only after the fit.
                    *([] if options.population else [PruneEndedTrialCheckpoints()]),
                    KeepReadableExperimentState(),
                    WarmEndOfRunImports(),
                    JsonLoggerCallback(),
                ],
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                verbose=current().ray_verbose,
            ),
        ),
    )
    started = time.perf_counter()
    with bind_tracker(tracker), tune_environment(), fitting(), warnings.catch_warnings():
        # Ray's advice to reuse actors under PBT (see reuse_actors above).
        warnings.filterwarnings("ignore", message="Consider boosting PBT performance")
        grid = tuner.fit()
    elapsed = time.perf_counter() - started
    stopped = unfinished_trial_ids(experiment)
    if stopped:
        # A signal stopped the fit: keep every checkpoint resume may need, record the stopped
        # trials as interrupted (never as completed or early-stopped), choose no winner.
        results = list(grid)  # type: ignore[call-overload]
        sync_results(
            tracker,
            sweep_run,
            results,
            SearchedConfig(plan.base),
            interrupted=stopped,
            inputs=inputs,
        )
        tracker.end_run(sweep_run, "KILLED")
        raise InterruptedRunError()
    for result in grid:  # type: ignore[attr-defined]
        # fit() ends with a forced snapshot: no resume needs an older checkpoint any more.
        if Path(result.path).is_dir():
            prune_to_newest(Path(result.path))
    return _summarise(plan, tracker, sweep_run, grid, elapsed, inputs)


def _warm_start_params(warm: WarmStart | None) -> dict[str, Any]:
    """The sweep run's record of its warm start: where from, how many, what was dropped."""
    if warm is None:
        return {}
    return {
        "warm_start": warm.source,
        "warm_start.trials": len(warm.seeded),
        "warm_start.shared": ",".join(warm.shared),
        "warm_start.dropped": ",".join(warm.dropped) or "none",
        "warm_start.mode": warm.mode,
    }


def record_sweep_outputs(result: SweepResult, tracker: Tracker) -> list[Path]:
    """``trials.csv`` and the sweep's plots, in its directory and as artifacts of its run."""
    out = result.plan.out
    result.trials.to_csv(out / "trials.csv", index=False)
    from margin_tune.pipeline.analysis.plots import (
        sweep_plots,  # pyplot only when a sweep has ended
    )

    space = result.plan.space
    plots = sweep_plots(
        result.trials,
        result.histories,
        metric=space.metric,
        mode=space.mode,
        distributions={p.path: p.optuna_distribution() for p in space.searched},
        directory=out / "plots",
    )
    objectives = result.plan.options.objective_list
    if objectives:
        from margin_tune.pipeline.analysis.plots import pareto_plot

        front = result.pareto
        front.to_csv(out / PARETO_FILE, index=False)
        tracker.log_artifact(result.parent_run_id, str(out / PARETO_FILE))
        drawn = pareto_plot(result.trials, front, objectives, out / "plots" / "pareto.png")
        plots = [*plots, drawn] if drawn is not None else plots
    if result.schedule is not None:
        plots += log_schedule(result.schedule, out, tracker, result.parent_run_id)
    tracker.log_artifacts(result.parent_run_id, str(out / "plots"), artifact_path="plots")
    tracker.log_artifact(result.parent_run_id, str(out / "trials.csv"))
    return plots


def log_schedule(schedule: pd.DataFrame, out: Path, tracker: Tracker, run_id: str) -> list[Path]:
    """The learned schedule as ``schedule.csv``, as an MLflow table (``schedule.json``, what
    ``MlflowClient.log_table`` writes, shown in the run's artifacts) and as a plot."""
    from margin_tune.pipeline.analysis.plots import schedule_plot  # pyplot once a sweep ended

    schedule.to_csv(out / SCHEDULE_FILE, index=False)
    table = out / SCHEDULE_TABLE
    schedule.to_json(table, orient="split", index=False)
    for path in (out / SCHEDULE_FILE, table):
        tracker.log_artifact(run_id, str(path))
    tracker.set_tags(
        run_id, {MLFLOW_LOGGED_ARTIFACTS: json.dumps([{"path": SCHEDULE_TABLE, "type": "table"}])}
    )
    drawn = schedule_plot(schedule, out / "plots" / "schedule.png")
    return [drawn] if drawn is not None else []


#: The learned schedule as an MLflow table.
SCHEDULE_TABLE = "schedule.json"


#: A multi-objective sweep's front, in its directory and among its run's artifacts.
PARETO_FILE = "pareto.csv"


def _summarise(
    plan: SweepPlan,
    tracker: Tracker,
    sweep_run: str,
    grid: tune.ResultGrid,
    elapsed: float,
    inputs: DatasetInputs,
) -> SweepResult:
    space = plan.space
    objective = {o.metric for o in plan.options.objective_list}
    schedule: pd.DataFrame | None = None
    rows = []
    histories: dict[str, pd.DataFrame] = {}
    results = list(grid)  # type: ignore[call-overload]  # ResultGrid iterates via __getitem__
    errors: list[str] = []
    synced = sync_results(tracker, sweep_run, results, SearchedConfig(plan.base), inputs=inputs)
    for trial in synced:
        if trial.result.error is not None:
            errors.append(
                f"trial {trial.trial_id}: {first_line(trial.result.error)} ({trial.result.path})"
            )
        if trial.history is not None:
            histories[trial.trial_id] = trial.history
        last = trial.result.metrics or None
        rows.append(
            {
                TRIAL_ID_TAG: trial.trial_id,
                "name": run_name(trial.config),
                "status": trial.status,
                "epochs": int(last.get("epoch", 0)) if last else 0,
                **{f"config.{k}": v for k, v in (trial.result.config or {}).items()},
                **{
                    k: v
                    for k, v in (last or {}).items()
                    if k.startswith((VALIDATION_PREFIX, MARGIN, EASY_RATIO)) or k in objective
                },
                "run_id": trial.run_id,
            }
        )
    table = pd.DataFrame(rows)
    best = best_trial(table, space.metric, space.mode)
    budget = realised_budget(plan, table)
    tracker.log_metrics(
        sweep_run,
        {
            **{
                f"best_{key}": float(value)
                for key, value in best.items()
                if key in TUNABLE_METRICS and isinstance(value, int | float)
            },
            **{f"trials_{name}": float(budget[f"trials_{name}"]) for name in TRIAL_STATUSES},
            "trials_seeded": float(budget["trials_seeded"]),
            **(
                {"pareto_trials": float(len(pareto_front(table, plan.options.objective_list)))}
                if plan.options.objectives
                else {}
            ),
            "trial_epochs": float(budget["trial_epochs"]),
            "wall_seconds": elapsed,
        },
    )
    if best:
        tracker.set_tags(
            sweep_run,
            {
                BEST_TRIAL_TAG: str(best[TRIAL_ID_TAG]),
                BEST_RUN_TAG: str(best.get("run_id", "")),
                BEST_EPOCHS_TAG: str(best["epochs"]),
                BEST_SCORE_TAG: f"{best[space.metric]:.6g}",
                **{
                    BEST_CONFIG_PREFIX + k.removeprefix("config."): str(v)
                    for k, v in best.items()
                    if k.startswith("config.")
                },
            },
        )
        # The winner's network, in its own run: what `tune` found, kept to be used.
        winner = [t for t in synced if t.trial_id == best[TRIAL_ID_TAG]]
        log_trained_models(tracker, winner, plan.dataset)
        if plan.options.population and winner and winner[0].result.checkpoint is not None:
            with winner[0].result.checkpoint.as_directory() as directory:
                schedule = learned_schedule(Path(directory) / CHECKPOINT_FILE)
    else:
        tracker.set_tags(sweep_run, {BEST_TRIAL_TAG: NO_COMPLETED_TRIAL})
    # A sweep without a trial that trained its budget has no result: its run says so.
    tracker.end_run(sweep_run, "FINISHED" if best else "FAILED")
    return SweepResult(plan, sweep_run, table, best, histories, errors, schedule)


#: The ``best_trial_id`` tag of a sweep in which no trial trained its whole epoch budget.
NO_COMPLETED_TRIAL = "none: no trial completed its epoch budget"


def best_trial(table: pd.DataFrame, metric: str, mode: str) -> dict[str, Any]:
    """The row of the best trial that trained the whole budget, or ``{}`` when none did.

    Only ``completed`` trials compete: their ``metric`` was measured at the last epoch, the
    epoch the re-training stops at. Early-stopped, collapsed and failed trials are excluded,
    even with a better last value.
    """
    if table.empty or metric not in table:
        return {}
    scored = table[(table["status"] == "completed") & table[metric].notna()]
    if scored.empty:
        return {}
    position = scored[metric].idxmax() if mode == "max" else scored[metric].idxmin()
    return dict(scored.loc[position].to_dict())
