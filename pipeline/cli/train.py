"""``margin-tune train``: one trial in a plain loop, written to an output directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from margin_tune.pipeline import api
from margin_tune.pipeline.api.training import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE
from margin_tune.pipeline.cli.flags import add_config_flags, add_output_flags
from margin_tune.pipeline.outputs.folders import json_text
from margin_tune.pipeline.runtime.console import current
from margin_tune.pipeline.runtime.logs import LOG_FILE
from margin_tune.trainables.metric_names import (
    COUNT_KEYS,
    EASY_RATIO,
    EPOCH_SECONDS,
    HARD_RATIO,
    MAP_AT_R,
    MARGIN,
    ROC_AUC,
    TEST_PREFIX,
    TRAIN_LOSS,
    on_test,
    on_validation,
)
from margin_tune.trainables.trial import EpochReport, Trial

#: The test metrics that are counts, printed as integers.
COUNTS = tuple(map(on_test, COUNT_KEYS))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser)
    add_output_flags(parser)
    parser.add_argument("--out", type=Path, required=True, help="new or empty output directory")
    parser.add_argument(
        "--save-embeddings",
        action="store_true",
        help="also write test_embeddings.npz (X, y) of the test classes",
    )


def run(args: argparse.Namespace) -> int:
    epochs = 0
    console = current()

    def started(trial: Trial) -> None:
        nonlocal epochs
        epochs, split = trial.config.train.epochs, trial.split
        console.say(
            f"dataset {trial.dataset.name}: {len(trial.dataset.labels)} samples; classes "
            f"{len(split.train_classes)} train / {len(split.val_classes)} val / "
            f"{len(split.test_classes)} test; scheduler {trial.config.margin.scheduler}; "
            f"device {trial.device}"
        )

    result = api.train(
        args.config,
        args.overrides,
        out=args.out,
        save_embeddings=args.save_embeddings,
        on_start=started,
        on_epoch=lambda report: console.say(_progress_line(report, epochs)),
    )
    if args.json:
        document = {
            "command": "train",
            "exit_code": 0,
            "ok": True,
            "out": str(Path(str(result.out)).resolve()),
            "files": {
                name: str(Path(str(result.out)).resolve() / name)
                for name in (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, LOG_FILE)
            },
            "stop_reason": result.stop_reason,
            "epochs": len(result.history),
            "wall_seconds": result.wall_seconds,
            "test_metrics": result.test_metrics,
            "reference_metrics": result.reference_metrics,
            "summary": result.summary,
        }
        print(json_text(document))
        return 0
    if result.stop_reason != "completed":
        print(f"stopped after epoch {len(result.history)}: {result.stop_reason}")
    print(
        "test  "
        + "  ".join(
            f"{k.removeprefix(TEST_PREFIX)} {v:{'.0f' if k in COUNTS else '.4f'}}"
            for k, v in result.test_metrics.items()
        )
    )
    for name, metrics in result.reference_metrics.items():
        print(f"  ({name}: {ROC_AUC} {metrics[on_test(ROC_AUC)]:.4f})")
    print(f"wrote {result.out}")
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
