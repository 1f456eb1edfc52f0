"""Figures of one trial: test ROC-AUC on unseen classes for raw features, the untrained
network, and training under ``constant`` and ``dams``, on ``synthetic`` (the default) and
``digits``.

Run: ``python bench/core_figures.py [--seeds 3]``. Prints a markdown table; every figure comes
from the real ``margin-tune train`` code path (``Trial.run(evaluate_test=True)``).
"""

from __future__ import annotations

import argparse
import statistics
import time

from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import Trial

DATASETS = {
    "synthetic": [],
    "digits": [
        "dataset.name=digits",
        "dataset.train_fraction=0.4",
        "dataset.val_fraction=0.2",
        "sampler.classes_per_batch=4",
        "sampler.samples_per_class=16",
    ],
}
SCHEDULERS = ("constant", "dams")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    seeds = range(parser.parse_args().seeds)
    print("| dataset | raw features | untrained | constant μ=0.2 | dams | default trial wall s |")
    print("|---|---|---|---|---|---|")
    for dataset, overrides in DATASETS.items():
        scores: dict[str, list[float]] = {}
        walls: list[float] = []
        for scheduler in SCHEDULERS:
            for seed in seeds:
                config = load_config(
                    overrides=[*overrides, f"margin.scheduler={scheduler}", f"seed={seed}"]
                )
                started = time.perf_counter()
                result = Trial(config).run(evaluate_test=True)
                if scheduler == "dams":
                    walls.append(time.perf_counter() - started)
                assert result.test_metrics is not None
                scores.setdefault(scheduler, []).append(result.test_metrics["roc_auc"])
                for name, metrics in result.reference_metrics.items():
                    scores.setdefault(name, []).append(metrics["roc_auc"])

        cells = [
            _mean_sd(scores[name]) for name in ("raw_features", "untrained", "constant", "dams")
        ]
        print(f"| {dataset} | {' | '.join(cells)} | {statistics.median(walls):.1f} |")


def _mean_sd(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


if __name__ == "__main__":
    main()
