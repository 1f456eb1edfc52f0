"""``margin-tune verify``: a saved model on LFW's ``pairs.txt``, fold by fold."""

from __future__ import annotations

import argparse
from pathlib import Path

from margin_tune.pipeline import api
from margin_tune.pipeline.api.verification import PAIR_CLASSES
from margin_tune.pipeline.cli.flags import add_model_flags, add_output_flags, add_override_flag
from margin_tune.pipeline.outputs.folders import json_text
from margin_tune.trainables.metric_names import EER, ROC_AUC


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_flags(parser)
    add_override_flag(
        parser,
        "dataset.* value over the model's dataset, repeatable (e.g. dataset.name=lfw "
        "dataset.path=/data/lfw)",
    )
    parser.add_argument(
        "--classes",
        default="all",
        help=f"{' | '.join(PAIR_CLASSES)}: every pair, or only the pairs of two identities "
        "among the model's test classes (default all)",
    )
    parser.add_argument("--out", type=Path, help="new .json file for the report")
    add_output_flags(parser)


def run(args: argparse.Namespace) -> int:
    result = api.verify(
        args.model,
        args.overrides,
        classes=args.classes,
        out=args.out,
        tracking_uri=args.tracking_uri,
    )
    report = result.report
    if args.json:
        payload = {"command": "verify", "exit_code": 0, "ok": True, "model": str(args.model)}
        if result.out is not None:
            payload["out"] = str(result.out.resolve())
        print(json_text({**payload, **result.to_dict()}))
        return 0
    folds = len(report.folds)
    print(f"{result.dataset.name}: {result.pairs:,} pairs in {folds} folds, {args.model}")
    print("fold  pairs  same  distance threshold  accuracy")
    for fold in report.folds:
        print(
            f"{fold.fold:>4}  {fold.pairs:>5}  {fold.same_pairs:>4}  "
            f"{fold.distance_threshold:>18.4f}  {fold.accuracy:>8.4f}"
        )
    print(
        f"accuracy {report.accuracy_mean:.4f} ± {report.accuracy_standard_error:.4f} "
        f"(standard error; std {report.accuracy_std:.4f}), each fold's threshold fitted on the "
        f"others; over all pairs ROC-AUC {report.overall[ROC_AUC]:.4f}, EER "
        f"{report.overall[EER]:.4f}"
    )
    if result.pairs_with_seen_identities:
        print(
            f"note: {result.pairs_with_seen_identities:,} of these pairs show identities the "
            "model trained or validated on; --classes test keeps only unseen ones"
        )
    if result.out is not None:
        print(f"wrote {result.out}")
    return 0
