"""``margin-tune train``: one trial in a plain loop, written to an output directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from margin_tune.pipeline.cli.flags import add_config_flags
from margin_tune.pipeline.outputs.folders import (
    CsvAppender,
    check_output_dir,
    new_output_dir,
    write_json,
    write_yaml,
)
from margin_tune.trainables.metric_names import (
    COUNT_KEYS,
    EASY_RATIO,
    EPOCH_COLUMNS,
    EPOCH_SECONDS,
    HARD_RATIO,
    MAP_AT_R,
    MARGIN,
    ROC_AUC,
    TRAIN_LOSS,
    on_test,
    on_validation,
)
from margin_tune.trainables.parts import load_config
from margin_tune.trainables.trial import EpochReport, Trial


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    parser.add_argument("--out", type=Path, required=True, help="new or empty output directory")
    parser.add_argument(
        "--save-embeddings",
        action="store_true",
        help="also write test_embeddings.npz (X, y) of the test classes",
    )


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    config = load_config(args.config, args.overrides)
    trial = Trial(config)
    with new_output_dir(args.out) as out:  # a second command on --out is refused
        write_yaml(out / "config.yaml", config.to_dict())
        metrics_csv = CsvAppender(out / "metrics.csv", EPOCH_COLUMNS)
        split = trial.split
        print(
            f"dataset {trial.dataset.name}: {len(trial.dataset.labels)} samples; classes "
            f"{len(split.train_classes)} train / {len(split.val_classes)} val / "
            f"{len(split.test_classes)} test; scheduler {config.margin.scheduler}; "
            f"device {trial.device}",
            flush=True,
        )
        started = time.perf_counter()

        def on_epoch(report: EpochReport) -> None:
            metrics_csv.append(report.metrics)
            print(_progress_line(report, config.train.epochs), flush=True)

        result = trial.run(on_epoch, evaluate_test=True, keep_test_embeddings=args.save_embeddings)
        assert result.test_metrics is not None
        summary = {
            "stop_reason": result.stop_reason,
            "epochs": len(result.history),
            "wall_seconds": time.perf_counter() - started,
            "dataset_fingerprint": trial.dataset.fingerprint(),
            **{on_test(name): value for name, value in result.test_metrics.items()},
            "final": result.history[-1] if result.history else {},
            "reference": {
                name: {on_test(key): value for key, value in metrics.items()}
                for name, metrics in result.reference_metrics.items()
            },
        }
        write_json(out / "summary.json", summary)
        if result.stop_reason != "completed":
            print(f"stopped after epoch {len(result.history)}: {result.stop_reason}")
        if result.test_embeddings is not None and result.test_labels is not None:
            np.savez(out / "test_embeddings.npz", X=result.test_embeddings, y=result.test_labels)
        print(
            "test  "
            + "  ".join(
                f"{k} {v:{'.0f' if k in COUNT_KEYS else '.4f'}}"
                for k, v in result.test_metrics.items()
            ),
            file=sys.stdout,
        )
        for name, metrics in result.reference_metrics.items():
            print(f"  ({name}: {ROC_AUC} {metrics[ROC_AUC]:.4f})")
        print(f"wrote {out}")
    return 0


def _progress_line(report: EpochReport, epochs: int) -> str:
    m = report.metrics
    roc_auc, map_at_r = on_validation(ROC_AUC), on_validation(MAP_AT_R)
    return (
        f"epoch {report.epoch:>3}/{epochs}  margin {m[MARGIN]:.3f}  easy {m[EASY_RATIO]:.3f}  "
        f"hard {m[HARD_RATIO]:.3f}  loss {m[TRAIN_LOSS]:.4f}  "
        f"{roc_auc} {m[roc_auc]:.4f}  {map_at_r} {m[map_at_r]:.4f}  "
        f"({m[EPOCH_SECONDS]:.1f} s)"
    )
