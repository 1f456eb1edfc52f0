"""One sweep: Ray Tune runs the trials, Optuna suggests, ASHA stops early, MLflow records.

``plan_sweep`` checks every input and builds nothing that lasts; ``run_sweep`` then starts (or
joins) Ray, opens the sweep's parent run, fits the Tuner and returns the trials' results.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from pipeline.checkpoints import PruneEndedTrialCheckpoints
from pipeline.search_space import SearchSpace, apply_overrides
from pipeline.searchers import SEARCHERS, SearcherRequest, build_searcher
from pipeline.tracking import Tracker
from pipeline.trainable import run_tune_trial
from pipeline.tune_callback import (
    TRIAL_ID_TAG,
    SearchedConfig,
    TrackingCallback,
    bind_tracker,
    sync_trial_run,
    trial_status,
)
from trainables.config import Config
from trainables.data import Dataset, load_dataset
from trainables.errors import ConfigError
from trainables.trial import Trial

EXPERIMENT_DIR = "tune"
#: Tune snapshots its experiment state (what ``Tuner.restore`` reads) at most every 10 s by
#: default; a trial that finished after the last snapshot is run again on resume, under a new
#: trial id (seen here: 2 of 6 finished trials re-run after a SIGKILL). Snapshotting on every
#: controller step closes that window; ``TUNE_GLOBAL_CHECKPOINT_S`` set by the user wins.
SNAPSHOT_PERIOD_S = "0"


@dataclass(frozen=True)
class SweepOptions:
    """The common flags of ``tune``, ``compare`` and ``ablate``."""

    trials: int
    concurrency: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    searcher: str = "tpe"
    seed: int = 0
    storage: str | None = None
    grace_period: int = 2
    reduction_factor: float = 2.0
    early_stopping: bool = True
    experiment: str = "margin-tune"
    tracking_uri: str | None = None
    address: str | None = None
    max_failures: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError("--trials", f"must be >= 1, got {self.trials}")
        if self.concurrency < 1:
            raise ConfigError("--concurrency", f"must be >= 1, got {self.concurrency}")
        if self.cpus_per_trial <= 0:
            raise ConfigError("--cpus-per-trial", f"must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ConfigError("--gpus-per-trial", f"must be >= 0, got {self.gpus_per_trial}")
        if self.searcher not in SEARCHERS:
            raise ConfigError(
                "--searcher",
                f"unknown value {self.searcher!r}; allowed: {', '.join(SEARCHERS.names())}",
            )
        if self.grace_period < 1:
            raise ConfigError("--grace-period", f"must be >= 1, got {self.grace_period}")
        if self.reduction_factor <= 1:
            raise ConfigError("--reduction-factor", f"must be > 1, got {self.reduction_factor}")
        if self.max_failures < 0:
            raise ConfigError("--max-failures", f"must be >= 0, got {self.max_failures}")


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep: everything ``run_sweep`` needs, nothing started yet."""

    name: str
    base: Config
    space: SearchSpace
    options: SweepOptions
    out: Path
    dataset: Dataset
    sweep_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class SweepResult:
    """Per-trial rows (config values, status, last metrics) and the best trial."""

    plan: SweepPlan
    parent_run_id: str
    trials: pd.DataFrame
    best: dict[str, Any]
    histories: dict[str, pd.DataFrame]


def plan_sweep(
    name: str,
    base: Config,
    space: SearchSpace,
    options: SweepOptions,
    out: Path,
    *,
    sweep_id: str | None = None,
) -> SweepPlan:
    """Validate the sweep end to end: a trial built at the space's first values must construct.

    Building one ``Trial`` loads the data and checks split, sampler and model sizes, so a bad
    input fails here, before Ray, MLflow or any output directory exists.
    """
    if options.grace_period > base.train.epochs:
        raise ConfigError(
            "--grace-period",
            f"must be <= train.epochs ({base.train.epochs}), got {options.grace_period}",
        )
    dataset = load_dataset(base.dataset)
    probe = apply_overrides(base, {p.path: p.extremes()[0] for p in space.parameters})
    Trial(probe, dataset=dataset)
    plan = SweepPlan(name=name, base=base, space=space, options=options, out=out, dataset=dataset)
    return plan if sweep_id is None else replace(plan, sweep_id=sweep_id)


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[None]:
    """Join ``address`` or start a local Ray that lives as long as the block."""
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            address="local",  # never join a cluster someone else started on this machine
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        yield
    finally:
        ray.shutdown()


def local_resources() -> list[dict[str, Any]]:
    """What ``ray_session`` without an address gives: this machine's CPUs and CUDA devices."""
    import torch

    return [
        {"Alive": True, "Resources": {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}}
    ]


@contextmanager
def sweep_cluster(options: SweepOptions) -> Iterator[None]:
    """The Ray session a sweep runs in, once the trials' resources are known to fit.

    Without ``--address`` the check runs before Ray starts, against what the local Ray will get,
    so a bad request starts nothing; a joined cluster is checked once connected.
    """
    if not options.address:
        check_cluster_resources(options, local_resources())
    with ray_session(options.address):
        if options.address:
            check_cluster_resources(options, [node for node in ray.nodes() if node.get("Alive")])
        yield


def check_cluster_resources(options: SweepOptions, nodes: list[dict[str, Any]]) -> None:
    """Refuse trials no node can ever place, instead of letting them pend forever.

    Ray Tune keeps a trial PENDING as long as no node offers its resources; on a fixed cluster
    (the local one, or one joined without an autoscaler) that is forever.
    """
    gpus = sum(node["Resources"].get("GPU", 0) for node in nodes)
    if options.gpus_per_trial > 0 and not any(
        node["Resources"].get("GPU", 0) >= options.gpus_per_trial for node in nodes
    ):
        raise ConfigError(
            "--gpus-per-trial",
            f"{options.gpus_per_trial:g} GPU per trial, but no node of the Ray cluster has that "
            f"many ({gpus:g} GPUs in all); use 0 on a CPU-only cluster",
        )
    most_cpus = max((node["Resources"].get("CPU", 0) for node in nodes), default=0)
    if options.cpus_per_trial > most_cpus:
        raise ConfigError(
            "--cpus-per-trial",
            f"{options.cpus_per_trial:g} CPUs per trial, but the largest node of the Ray "
            f"cluster has {most_cpus:g}",
        )


def run_sweep(
    plan: SweepPlan, tracker: Tracker, *, parent_run_id: str | None = None
) -> SweepResult:
    """Run the planned sweep inside an active Ray session; returns when every trial ended."""
    options, space, base = plan.options, plan.space, plan.base
    sweep_run = tracker.sweep_run(
        name=plan.name,
        sweep_id=plan.sweep_id,
        parent_run_id=parent_run_id,
        params={
            "space": space.name,
            "trials": options.trials,
            "searcher": options.searcher,
            "metric": space.metric,
            "mode": space.mode,
            "epochs": base.train.epochs,
            "concurrency": options.concurrency,
            "asha": options.early_stopping,
            "asha.grace_period": options.grace_period,
            "asha.reduction_factor": options.reduction_factor,
            "seed": options.seed,
        },
        tags={
            "margin_tune.sweep_id": plan.sweep_id,
            "margin_tune.kind": "sweep",
            "git_commit": git_commit(),
            "dataset": base.dataset.name,
            "dataset_fingerprint": plan.dataset.fingerprint(),
        },
    )
    if space.source is not None:
        tracker.log_artifact(sweep_run, str(space.source), artifact_path="space")
    searcher = build_searcher(
        options.searcher,
        SearcherRequest(
            space=space,
            seed=options.seed,
            study_name=f"margin-tune-{plan.name}-{plan.sweep_id}",
            storage=options.storage,
        ),
    )
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=base.train.epochs,
            grace_period=options.grace_period,
            reduction_factor=options.reduction_factor,
        )
        if options.early_stopping
        else None
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            run_tune_trial,
            base=base.to_dict(),
            dataset=plan.dataset,
            cpus=options.cpus_per_trial,
        ),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", SNAPSHOT_PERIOD_S)
    experiment = plan.out.resolve() / EXPERIMENT_DIR
    if tune.Tuner.can_restore(str(experiment)):
        # Finished trials stay finished; unfinished and errored ones continue from their last
        # checkpoint; the searcher's state (Optuna's history) comes back with the experiment.
        tuner = tune.Tuner.restore(
            str(experiment), trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=space.metric,
                mode=space.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=options.trials,
                max_concurrent_trials=options.concurrency,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT_DIR,
                storage_path=str(plan.out.resolve()),
                callbacks=[
                    TrackingCallback(sweep_run, SearchedConfig(base)),
                    PruneEndedTrialCheckpoints(),
                ],
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                verbose=1,
            ),
        )
    started = time.perf_counter()
    with bind_tracker(tracker):
        grid = tuner.fit()
    elapsed = time.perf_counter() - started
    return _summarise(plan, tracker, sweep_run, grid, elapsed)


def _summarise(
    plan: SweepPlan,
    tracker: Tracker,
    sweep_run: str,
    grid: tune.ResultGrid,
    elapsed: float,
) -> SweepResult:
    space = plan.space
    rows = []
    histories: dict[str, pd.DataFrame] = {}
    tracker.flush()
    stored = tracker.child_runs(sweep_run)
    run_ids = {trial_id: run.run_id for trial_id, run in stored.items()}
    for result in grid:  # type: ignore[attr-defined]  # ResultGrid has __getitem__ + __len__
        trial_id = result.metrics.get("trial_id") if result.metrics else None
        if trial_id is None:
            trial_id = Path(result.path).name
        history = result.metrics_dataframe
        if history is not None and not history.empty:
            histories[trial_id] = history
        last = result.metrics or None
        config = apply_overrides(plan.base, result.config or {})
        status = trial_status(config, last, result.error is not None)
        known = stored.get(trial_id)
        if known is None or known.status == "RUNNING" or known.trial_status != status:
            run_ids[trial_id] = sync_trial_run(
                tracker,
                sweep_run,
                trial_id,
                config,
                history.to_dict("records") if history is not None else [],
                status,
                str(result.error) if result.error is not None else None,
            )
        rows.append(
            {
                TRIAL_ID_TAG: trial_id,
                "status": status,
                "epochs": int(last.get("epoch", 0)) if last else 0,
                **{f"config.{k}": v for k, v in (result.config or {}).items()},
                **{
                    k: v
                    for k, v in (last or {}).items()
                    if k.startswith(("val_", "margin", "easy_ratio"))
                },
                "run_id": run_ids.get(trial_id, ""),
            }
        )
    table = pd.DataFrame(rows)
    _end_abandoned_runs(tracker, run_ids, set(table[TRIAL_ID_TAG]) if rows else set())
    best: dict[str, Any] = {}
    scored = table.dropna(subset=[space.metric]) if space.metric in table else table.iloc[0:0]
    scored = scored[scored["status"] != "failed"] if not scored.empty else scored
    if not scored.empty:
        position = (
            scored[space.metric].idxmax() if space.mode == "max" else scored[space.metric].idxmin()
        )
        best = scored.loc[position].to_dict()
        tracker.log_metrics(
            sweep_run,
            {
                **{
                    f"best_{key}": float(value)
                    for key, value in best.items()
                    if key.startswith("val_") and isinstance(value, int | float)
                },
                "trials_completed": float((table["status"] == "completed").sum()),
                "trials_early_stopped": float((table["status"] == "early_stopped").sum()),
                "trials_failed": float((table["status"] == "failed").sum()),
                "wall_seconds": elapsed,
            },
        )
        tracker.set_tags(
            sweep_run,
            {
                "best_trial_id": str(best[TRIAL_ID_TAG]),
                "best_run_id": str(best.get("run_id", "")),
                **{
                    f"best.{k.removeprefix('config.')}": str(v)
                    for k, v in best.items()
                    if k.startswith("config.")
                },
            },
        )
    tracker.end_run(sweep_run)
    return SweepResult(plan, sweep_run, table, best, histories)


def _end_abandoned_runs(tracker: Tracker, run_ids: dict[str, str], trial_ids: set[str]) -> None:
    """Close runs of trials that the resumed experiment no longer has.

    A trial started after the experiment's last snapshot lives on only in MLflow when the
    driver dies; after ``resume`` its run would stay RUNNING forever. It is kept (nothing a user
    recorded is deleted) but ended as KILLED and tagged ``abandoned``.
    """
    for trial_id, run_id in run_ids.items():
        if trial_id not in trial_ids:
            tracker.set_tags(run_id, {"trial_status": "abandoned"})
            tracker.end_run(run_id, "KILLED")


def git_commit() -> str:
    """The commit of the code that ran, or ``unknown`` outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
