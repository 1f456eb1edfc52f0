"""Searcher efficiency: the best validation ROC-AUC after k trials, per searcher.

Run: ``python -m bench.searcher_efficiency [--space contrastive] [--trials 16] [--seeds 3]
[--epochs 10] [--out bench/searcher_efficiency.md]``. Every sweep is ``run_sweep``, the code
path of ``margin-tune tune``, on the packaged default config (``synthetic``) with ``train.epochs``
shortened, at concurrency 2, without ASHA (a stopped trial's value would mix how a searcher
chooses with how far its trials got). For each searcher and seed the running best of
``val_roc_auc`` is taken in the order the trials were created; the table gives its median over
seeds after k trials, and the regret table how far that is below the best value any sweep found.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.tables import markdown_table
from margin_tune.pipeline.search.space import load_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep, sweep_cluster
from margin_tune.pipeline.sweep.tuner import run_sweep
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.parts import load_config

SEARCHERS = ("coordinate", "tpe", "random")


def running_best(values: list[float]) -> list[float]:
    """The best value after each trial (a failed trial, NaN, does not count)."""
    best, out = float("-inf"), []
    for value in values:
        if value == value:  # not NaN
            best = max(best, value)
        out.append(best)
    return out


def sweep_curve(searcher: str, seed: int, args: argparse.Namespace, root: Path) -> list[float]:
    base = load_config(overrides=[f"train.epochs={args.epochs}", "train.num_threads=1"])
    space = load_space(args.space, base)
    options = SweepOptions(
        trials=args.trials,
        concurrency=2,
        searcher=searcher,
        seed=seed,
        early_stopping=False,
        experiment="searcher-efficiency",
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
    )
    out = root / f"{searcher}-{seed}"
    plan = plan_sweep(f"{searcher}-{seed}", base, space, options, out)
    with Tracker(options.tracking_uri, options.experiment) as tracker:
        result = run_sweep(plan, tracker)
    # ResultGrid lists the trials in the order Tune created them, i.e. the searcher's order.
    return running_best(result.trials[space.metric].astype(float).tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="contrastive")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/searcher_efficiency.md"))
    args = parser.parse_args()
    curves: dict[str, list[list[float]]] = {name: [] for name in SEARCHERS}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory, sweep_cluster(SweepOptions(trials=1)):
        for seed in range(args.seeds):
            for searcher in SEARCHERS:
                curves[searcher].append(sweep_curve(searcher, seed, args, Path(directory)))
                print(f"{searcher} seed {seed}: {curves[searcher][-1][-1]:.4f}", flush=True)
    elapsed = time.perf_counter() - started
    args.out.with_suffix(".json").write_text(json.dumps(curves, indent=1))
    text = tabulate(curves, args, elapsed)
    args.out.write_text(text + "\n")
    print(text)


def tabulate(curves: dict[str, list[list[float]]], args: argparse.Namespace, elapsed: float) -> str:
    """Median running best at a few k, and the regret against the best any sweep found."""
    ks = sorted({1, 2, 4, 8, 12, args.trials} & set(range(1, args.trials + 1)))
    medians = {
        name: [statistics.median(curve[k - 1] for curve in curves[name]) for k in ks]
        for name in SEARCHERS
    }
    top = max(max(curve) for runs in curves.values() for curve in runs)
    best = pd.DataFrame(
        {
            "searcher": SEARCHERS,
            **{f"k={k}": [medians[n][i] for n in SEARCHERS] for i, k in enumerate(ks)},
        }
    )
    regret = best.copy()
    for column in regret.columns[1:]:
        regret[column] = top - regret[column]
    return "\n\n".join(
        [
            f"Median over {args.seeds} seeds of the best val_roc_auc after k trials "
            f"(space {args.space}, {args.epochs} epochs, concurrency 2, no ASHA):",
            markdown_table(best, "{:.4f}"),
            f"Regret: the best value any sweep found ({top:.4f}) minus each median:",
            markdown_table(regret, "{:.4f}"),
            f"Wall time {elapsed:.0f} s for {len(SEARCHERS) * args.seeds} sweeps.",
        ]
    )


if __name__ == "__main__":
    main()
