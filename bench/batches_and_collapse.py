"""Figures for class-representative batches, and how often batch-hard mining collapses.

Run: ``python bench/batches_and_collapse.py [--seeds 5]``. Prints two markdown tables; every
trial is ``Trial(config).run(...)``, the code path of ``margin-tune train``, on ``synthetic``
with the default config except for the overrides named in each row.

1. Test ROC-AUC (mean ± sd over seeds) of ``pk`` batches against ``class_representative``
   batches, without and with hard negative class mining.
2. Batch-hard mining (``miner.name=hard``) under ``constant`` and ``dams`` margins: the trials
   run all epochs with collapse detection off, and the default monitor (threshold 0.01,
   patience 3) is replayed over each history, so the table shows both how many trials it would
   stop and how those trials end when left to run. The replay at threshold 0.05 shows what a
   looser threshold would stop, and the lowest spread shows how far each run shrank.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

from margin_tune.trainables.collapse import CollapseMonitor
from margin_tune.trainables.config import CollapseConfig
from margin_tune.trainables.metrics import EmbeddingSpread
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import Trial

SAMPLERS = {
    "pk": [],
    "class_representative": ["sampler.name=class_representative"],
    "class_representative + mining 0.5": [
        "sampler.name=class_representative",
        "sampler.hard_class_fraction=0.5",
    ],
    "class_representative + mining 1.0": [
        "sampler.name=class_representative",
        "sampler.hard_class_fraction=1.0",
    ],
}

COLLAPSE_SETTINGS = {
    "hard, noise 0.35, lr 1e-3": ["miner.name=hard"],
    "hard, noise 0.35, lr 0.1": ["miner.name=hard", "train.lr=0.1"],
    "hard, noise 1.0, lr 1e-3": ["miner.name=hard", "dataset.noise=1.0"],
    "hard, noise 1.0, lr 1e-2": ["miner.name=hard", "dataset.noise=1.0", "train.lr=0.01"],
    "all, noise 1.0, lr 1e-2": ["miner.name=all", "dataset.noise=1.0", "train.lr=0.01"],
}
MARGINS = ("constant", "dams")
LOOSE_THRESHOLD = 0.05


@dataclass(frozen=True)
class Run:
    test: dict[str, float]
    spreads: list[float]

    @property
    def test_roc_auc(self) -> float:
        return self.test["roc_auc"]


def run(overrides: list[str], seed: int) -> Run:
    config = load_config(overrides=[*overrides, f"seed={seed}", "train.num_threads=1"])
    result = Trial(config).run(evaluate_test=True)
    assert result.test_metrics is not None
    return Run(result.test_metrics, [row["embedding_spread"] for row in result.history])


def stop_epoch(spreads: list[float], threshold: float) -> int | None:
    """The epoch at which a monitor with this threshold (default patience) stops, if any."""
    monitor = CollapseMonitor(CollapseConfig(threshold=threshold))
    for epoch, spread in enumerate(spreads, start=1):
        if monitor.update(EmbeddingSpread(spread, 0.0)):
            return epoch
    return None


def sampler_table(seeds: range) -> list[str]:
    metrics = ("roc_auc", "recall_at_1", "map_at_r")
    lines = [
        "| batches | " + " | ".join(f"test {name}" for name in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, overrides in SAMPLERS.items():
        runs = [run(overrides, seed) for seed in seeds]
        cells = [mean_sd([r.test[metric] for r in runs]) for metric in metrics]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def collapse_table(seeds: range) -> list[str]:
    default = CollapseConfig()
    lines = [
        f"| setting | margin | collapsed (threshold {default.threshold}) | stop epochs | "
        f"test ROC-AUC if left to run: collapsed / others | stopped at {LOOSE_THRESHOLD} | "
        "lowest spread (median, range) |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, overrides in COLLAPSE_SETTINGS.items():
        for margin in MARGINS:
            runs = [
                run([*overrides, f"margin.scheduler={margin}", "collapse.enabled=false"], seed)
                for seed in seeds
            ]
            stops = [stop_epoch(r.spreads, default.threshold) for r in runs]
            loose = [stop_epoch(r.spreads, LOOSE_THRESHOLD) for r in runs]
            collapsed = [r.test_roc_auc for r, s in zip(runs, stops, strict=True) if s]
            others = [r.test_roc_auc for r, s in zip(runs, stops, strict=True) if not s]
            lowest = [min(r.spreads) for r in runs]
            lines.append(
                f"| {setting} | {margin} | {len(collapsed)}/{len(runs)} | "
                f"{', '.join(str(s) for s in stops if s) or '-'} | "
                f"{mean_or_dash(collapsed)} / {mean_or_dash(others)} | "
                f"{sum(1 for s in loose if s)}/{len(runs)} | "
                f"{statistics.median(lowest):.4f} ({min(lowest):.4f}-{max(lowest):.4f}) |"
            )
    return lines


def mean_sd(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def mean_or_dash(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", choices=("samplers", "collapse"), default=None)
    args = parser.parse_args()
    seeds = range(args.seeds)
    if args.only in (None, "samplers"):
        print("\n".join(sampler_table(seeds)), end="\n\n", flush=True)
    if args.only in (None, "collapse"):
        print("\n".join(collapse_table(seeds)), flush=True)


if __name__ == "__main__":
    main()
