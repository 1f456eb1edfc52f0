"""P4: the share of random search's budget that TPE with ASHA needs to match random's best.

Both sides are ``run_sweep``, the code path of ``margin-tune tune``, on the packaged default
config (``synthetic``) with ``train.epochs`` shortened, the ``dams`` space (the paper's
scheduler; its learning rate spans two decades, so trials differ enough for a searcher to
matter), concurrency 2, all sweeps in one Ray session so that Ray's start-up is paid once.
Random search without early stopping spends the full budget and sets the bar; TPE with ASHA,
same trials, epochs and seed, is then replayed in the order its results arrived, counting every
reported epoch, until one of them reaches the bar. Which configs each sweep draws is chance, so
the per-seed fractions scatter; the figure is their median and nothing is asserted.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.common import Figure
from bench.tables import markdown_table
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep, sweep_cluster
from margin_tune.pipeline.sweep.tuner import SweepResult, run_sweep
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.parts import load_config

SPACE = "dams"
CONCURRENCY = 2
GRACE_PERIOD = 2
REDUCTION_FACTOR = 2.0
TARGET_FRACTION = 0.5


@dataclass(frozen=True)
class Budget:
    """Seeds, and per sweep the trials and the epochs of a trial that runs to the end."""

    seeds: int
    trials: int
    epochs: int

    @property
    def trial_epochs(self) -> int:
        return self.trials * self.epochs


FULL = Budget(seeds=5, trials=16, epochs=10)
QUICK = Budget(seeds=2, trials=8, epochs=6)


def sweep(searcher: str, asha: bool, seed: int, budget: Budget, root: Path) -> SweepResult:
    """One sweep as ``margin-tune tune`` runs it, inside the Ray session already started."""
    base = load_config(overrides=[f"train.epochs={budget.epochs}", "train.num_threads=1"])
    space = load_space(SPACE, base)
    options = SweepOptions(
        trials=budget.trials,
        concurrency=CONCURRENCY,
        searcher=searcher,
        seed=seed,
        early_stopping=asha,
        grace_period=GRACE_PERIOD,
        reduction_factor=REDUCTION_FACTOR,
        experiment="bench-p4",
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
    )
    name = f"{searcher}-{seed}"
    plan = plan_sweep(name, base, space, options, root / name)
    with Tracker(options.tracking_uri, options.experiment) as tracker:
        return run_sweep(plan, tracker)


def chronological(histories: dict[str, pd.DataFrame], metric: str) -> pd.Series:
    """Every reported value of ``metric`` in a sweep, in the order the results were reported.

    Ray's ``timestamp`` is whole seconds, and at concurrency 2 several epochs land in one
    second; ``time_total_s`` (seconds since the trial started, sub-second) orders them. A
    result reported at ``t`` has ``timestamp <= t``, so each row bounds its trial's start from
    below by ``timestamp - time_total_s``; the latest such bound is taken as the start, and a
    result's time is that start plus its ``time_total_s``.
    """
    frames = []
    for history in histories.values():
        start = (history["timestamp"] - history["time_total_s"]).max()
        frames.append(
            pd.DataFrame({"at": start + history["time_total_s"], "value": history[metric]})
        )
    ordered = pd.concat(frames, ignore_index=True).sort_values("at", kind="stable")
    return ordered["value"].reset_index(drop=True)


def epochs_to_reach(values: pd.Series, bar: float) -> int | None:
    """Trial-epochs reported up to and including the first value ``>= bar``; None if none is."""
    hits = (values >= bar).to_numpy().nonzero()[0]
    return int(hits[0]) + 1 if len(hits) else None


@dataclass(frozen=True)
class SeedResult:
    """What one seed's pair of sweeps gives."""

    seed: int
    bar: float  # R*: the best value random reported at any epoch
    random_last: float  # the best among random's trials' final epochs
    needed: int | None  # TPE's trial-epochs up to its first value >= R*; None if none was
    tpe_best: float
    tpe_epochs: int
    stopped: int
    random_s: float
    tpe_s: float

    def fraction(self, budget: Budget) -> float:
        """``needed`` over random's budget; infinite where TPE never reached R*."""
        return math.inf if self.needed is None else self.needed / budget.trial_epochs

    def share(self, budget: Budget) -> str:
        """``38%``, or where TPE never reached R*, the share of the budget it used instead."""
        if self.needed is None:
            return f"not reached (TPE used {self.tpe_epochs / budget.trial_epochs:.0%})"
        return f"{self.fraction(budget):.0%}"

    def row(self, budget: Budget) -> dict[str, object]:
        return {
            "seed": self.seed,
            "R* (random, any epoch)": self.bar,
            "random, last epoch": self.random_last,
            "TPE epochs to R*": "–" if self.needed is None else self.needed,
            "fraction": self.share(budget),
            "TPE best": self.tpe_best,
            "TPE epochs": self.tpe_epochs,
            "ASHA stopped": self.stopped,
            "random s": f"{self.random_s:.0f}",
            "TPE s": f"{self.tpe_s:.0f}",
        }


def compare(seed: int, budget: Budget, root: Path) -> SeedResult:
    """Random without early stopping, then TPE with ASHA, on one seed."""
    started = time.perf_counter()
    random = sweep("random", False, seed, budget, root)
    random_s = time.perf_counter() - started
    started = time.perf_counter()
    tpe = sweep("tpe", True, seed, budget, root)
    tpe_s = time.perf_counter() - started
    metric = random.plan.space.metric
    bar = max(float(history[metric].max()) for history in random.histories.values())
    replay = chronological(tpe.histories, metric)
    return SeedResult(
        seed=seed,
        bar=bar,
        random_last=float(random.trials[metric].max()),
        needed=epochs_to_reach(replay, bar),
        tpe_best=float(replay.max()),
        tpe_epochs=len(replay),
        stopped=int((tpe.trials["status"] == "early_stopped").sum()),
        random_s=random_s,
        tpe_s=tpe_s,
    )


def measure(quick: bool) -> Figure:
    budget = QUICK if quick else FULL
    started = time.perf_counter()
    cluster = sweep_cluster(SweepOptions(trials=budget.trials, concurrency=CONCURRENCY))
    with tempfile.TemporaryDirectory(prefix="bench-p4-") as scratch, cluster:
        seeds = [compare(seed, budget, Path(scratch)) for seed in range(budget.seeds)]
    elapsed = time.perf_counter() - started
    median = statistics.median(result.fraction(budget) for result in seeds)
    table = pd.DataFrame([result.row(budget) for result in seeds])
    details = "\n".join(
        [
            f"Per seed 0..{budget.seeds - 1}: (a) random search, no early stopping, "
            f"{budget.trials} trials × {budget.epochs} epochs = {budget.trial_epochs} "
            "trial-epochs; R* is the best `val_roc_auc` any trial reported at any epoch ('random, "
            "last epoch' is the best among the trials' final epochs). (b) TPE with ASHA "
            f"(grace period {GRACE_PERIOD}, reduction factor {REDUCTION_FACTOR:g}, at most "
            f"{budget.epochs} epochs), same trials and seed. TPE's reported results are put in "
            "the order they were reported, across trials (Ray's `timestamp`, refined below the "
            "second by `time_total_s`), and counted, one per reported epoch, up to the first "
            f"that is ≥ R*; the fraction is that count / {budget.trial_epochs}. A seed where TPE "
            "never reaches R* counts as above any fraction in the median. Space "
            f"`{SPACE}`, packaged default config, one torch thread, concurrency {CONCURRENCY}, "
            "all sweeps in one Ray session. Optuna's TPE draws its first 10 trials at random with "
            "the same seed as the random searcher, so those configs coincide on both sides and "
            "much of the saving is ASHA's; 'random s' and 'TPE s' are the sweeps' wall times.",
            "",
            markdown_table(table, "{:.4f}"),
            "",
            f"Wall time {elapsed:.0f} s for {2 * budget.seeds} sweeps.",
        ]
    )
    shares = ", ".join(result.share(budget) for result in seeds)
    headline = (
        "median: R* not reached"
        if math.isinf(median)
        else f"median {median:.0%} of random's trial-epochs"
    )
    return Figure(
        id="P4",
        what="trial-epochs TPE + ASHA needs to reach random search's best val ROC-AUC",
        target=f"≤ {TARGET_FRACTION:.0%} of random's trial-epochs (median over seeds)",
        value=f"{headline} (per seed: {shares})",
        met=bool(median <= TARGET_FRACTION),
        details=details,
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
