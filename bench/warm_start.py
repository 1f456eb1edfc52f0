"""Warm start: the trial-epochs a warm-started TPE needs to reach a cold TPE's best value.

Run: ``python -m bench.warm_start [--space dams] [--trials 16] [--seeds 5] [--epochs 6]
[--noise 0.35] [--target-noise 0.5] [--out bench/warm_start.md]``. One source sweep runs on the
packaged default (``synthetic``, ``dataset.noise`` = ``--noise``); then, on a second dataset
(the same generator with ``--target-noise`` and another class split), a cold TPE sweep and a TPE
sweep warm-started from the source's completed trials (``tune --warm-start``'s code path:
:func:`~margin_tune.pipeline.sweep.warm_start.seed_trials`) run per seed. All are
``run_sweep`` at concurrency 2 without ASHA, so every trial costs ``--epochs`` trial-epochs and
the order of the trials is the order Tune created them. Per seed, the cold sweep's best value
is the target; the table gives the trial-epochs each sweep spent until a trial first reached
it, and their medians over seeds (a sweep that never reaches it counts as its whole budget,
marked), then the median best value after k trials. Added seeds cost nothing here (they ran on
the source dataset, once); enqueued ones run here and are counted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.tables import markdown_table
from margin_tune.pipeline.search.searchers import startup_trials
from margin_tune.pipeline.search.space import SearchSpace, load_space
from margin_tune.pipeline.sweep.plan import SweepOptions, plan_sweep, sweep_cluster
from margin_tune.pipeline.sweep.tuner import SweepResult, run_sweep
from margin_tune.pipeline.sweep.warm_start import EarlierSweep, WarmStart, seed_trials
from margin_tune.pipeline.tracking.tracker import Tracker
from margin_tune.trainables.config import Config
from margin_tune.trainables.parts import load_config


def base_config(epochs: int, noise: float, data_seed: int) -> Config:
    return load_config(
        overrides=[
            f"train.epochs={epochs}",
            "train.num_threads=1",
            f"dataset.noise={noise}",
            f"dataset.split_seed={data_seed}",
        ]
    )


def sweep(
    name: str,
    base: Config,
    space: SearchSpace,
    seed: int,
    args: argparse.Namespace,
    root: Path,
    warm: WarmStart | None = None,
) -> SweepResult:
    options = SweepOptions(
        trials=args.trials,
        concurrency=2,
        searcher="tpe",
        seed=seed,
        early_stopping=False,
        experiment="warm-start",
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
    )
    plan = plan_sweep(name, base, space, options, root / name, warm_start=warm)
    with Tracker(options.tracking_uri, options.experiment) as tracker:
        return run_sweep(plan, tracker)


def epochs_to_reach(values: list[float], target: float, epochs: int) -> int | None:
    """Trial-epochs spent until a trial first reached ``target`` (None: never)."""
    for index, value in enumerate(values, start=1):
        if value == value and value >= target:
            return index * epochs
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="dams")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--noise", type=float, default=0.35)
    parser.add_argument("--target-noise", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("bench/warm_start.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    curves: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as directory, sweep_cluster(SweepOptions(trials=1)):
        root = Path(directory)
        source_base = base_config(args.epochs, args.noise, data_seed=0)
        source_space = load_space(args.space, source_base)
        source = sweep("source", source_base, source_space, 100, args, root)
        target_base = base_config(args.epochs, args.target_noise, data_seed=1)
        space = load_space(args.space, target_base)
        earlier = EarlierSweep(
            "the source sweep",
            source.trials,
            source_space.metric,
            tuple(p.path for p in source_space.searched),
            source_space.fixed,
        )
        added = seed_trials(earlier, space)
        best_first = sorted(added.seeded, key=lambda seed: seed.value, reverse=True)
        enqueued = replace(
            added, seeded=tuple(best_first[: startup_trials(args.trials)]), mode="enqueue"
        )
        for seed in range(args.seeds):
            cold = sweep(f"cold-{seed}", target_base, space, seed, args, root)
            values = {"cold": cold.trials[space.metric].astype(float).tolist()}
            for arm, warm in (("add", added), ("enqueue", enqueued)):
                result = sweep(f"{arm}-{seed}", target_base, space, seed, args, root, warm)
                values[arm] = result.trials[space.metric].astype(float).tolist()
            target = max(v for v in values["cold"] if v == v)
            row: dict[str, object] = {"seed": seed, "cold best": target}
            for arm, series in values.items():
                reached = epochs_to_reach(series, target, args.epochs)
                row[f"{arm}: trial-epochs to it"] = (
                    reached if reached is not None else f">{args.trials * args.epochs}"
                )
                curves.setdefault(arm, []).append(running_best(series))
            rows.append(row)
            print(row, flush=True)
    elapsed = time.perf_counter() - started
    text = tabulate(pd.DataFrame(rows), curves, added, enqueued, args, elapsed)
    args.out.write_text(text + "\n")
    print(text)


def running_best(values: list[float]) -> list[float]:
    best, out = float("-inf"), []
    for value in values:
        if value == value:
            best = max(best, value)
        out.append(best)
    return out


def median_epochs(column: pd.Series, budget: int) -> str:
    """The median of trial-epochs where a miss (``>budget``) ranks above every hit."""
    numbers = [budget + 1 if isinstance(v, str) else int(v) for v in column]
    middle = statistics.median(numbers)
    return f">{budget}" if middle > budget else f"{middle:g}"


def tabulate(
    table: pd.DataFrame,
    curves: dict[str, list[list[float]]],
    added: WarmStart,
    enqueued: WarmStart,
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    budget = args.trials * args.epochs
    ks = sorted({1, 2, 4, 8, 12, args.trials} & set(range(1, args.trials + 1)))
    best_after = pd.DataFrame(
        {
            "sweep": list(curves),
            **{
                f"k={k}": [statistics.median(c[k - 1] for c in runs) for runs in curves.values()]
                for k in ks
            },
        }
    )
    medians = ", ".join(
        f"{arm} {median_epochs(table[f'{arm}: trial-epochs to it'], budget)}" for arm in curves
    )
    return "\n\n".join(
        [
            f"Space {args.space}, {args.trials} trials x {args.epochs} epochs per sweep, TPE, "
            f"concurrency 2, no ASHA. Source: synthetic, noise {args.noise} (class split 0); "
            f"target: noise {args.target_noise} (class split 1). add: {len(added.seeded)} "
            f"source trials added as finished; enqueue: the best {len(enqueued.seeded)} run "
            f"first, on {', '.join(added.shared)}.",
            markdown_table(table, "{:.4f}"),
            f"Median trial-epochs to the cold sweep's best ({budget} per sweep): {medians}.",
            "Median over seeds of the best value after k trials:",
            markdown_table(best_after, "{:.4f}"),
            f"Wall time {elapsed:.0f} s for {1 + 3 * args.seeds} sweeps.",
        ]
    )


if __name__ == "__main__":
    main()
