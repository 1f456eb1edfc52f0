"""The floor a sweep is measured against: the same trials without Ray, MLflow or checkpoints.

Run as a module so its wall time includes the interpreter and imports, like the sweep's::

    python -m bench.plain_trials CONFIGS.json --processes 2 --times TIMES.json

``CONFIGS.json`` is a list of ``{dotted.path: value}`` overrides on the packaged config; each
process loads the dataset once and trains its share of the trials in a plain loop. With
``--processes 1`` the trials run one after another in this process (the sequential figure).
``--times`` writes each trial's per-epoch wall times, what P2 compares Tune's epochs with.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

from margin_tune.pipeline.search.space import apply_overrides
from margin_tune.trainables.config import Config
from margin_tune.trainables.data import Dataset, load_dataset
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import EpochReport, Trial

_dataset: Dataset | None = None


def _load(base: Config) -> None:
    global _dataset
    _dataset = load_dataset(base.dataset)


def run_trial(config: Config) -> list[float]:
    """Train one trial; returns the wall seconds of each epoch (training plus validation),
    after the ``time.time()`` at which the trial started and ended."""
    started = time.time()
    trial = Trial(config, dataset=_dataset)
    epoch_walls: list[float] = []
    last = time.perf_counter()

    def record(_: EpochReport) -> None:
        nonlocal last
        now = time.perf_counter()
        epoch_walls.append(now - last)
        last = now

    trial.run(record)
    return [started, time.time(), *epoch_walls]


def trial_configs(overrides: list[dict[str, Any]]) -> list[Config]:
    base = load_config(None, [])
    return [apply_overrides(base, {**o, "train.num_threads": 1}) for o in overrides]


def run_all(configs: list[Config], processes: int) -> list[list[float]]:
    if processes == 1:
        _load(configs[0])
        return [run_trial(config) for config in configs]
    context = multiprocessing.get_context("spawn")  # what a fresh worker costs, as Ray's do
    with context.Pool(processes, initializer=_load, initargs=(configs[0],)) as pool:
        return pool.map(run_trial, configs, chunksize=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", type=Path)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--times", type=Path, help="write each trial's epoch wall times")
    parser.add_argument("--events", type=Path, help="write each trial's start and end time")
    args = parser.parse_args()
    configs = trial_configs(json.loads(args.configs.read_text()))
    runs = run_all(configs, args.processes)
    if args.times:
        args.times.write_text(json.dumps([walls for _, _, *walls in runs]))
    if args.events:
        args.events.write_text(json.dumps([[started, ended] for started, ended, *_ in runs]))


if __name__ == "__main__":
    main()
