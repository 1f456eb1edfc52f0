"""``margin-tune embed``: a saved model's embeddings of a dataset, written as ``.npz``."""

from __future__ import annotations

import argparse
from pathlib import Path

from margin_tune.pipeline import api
from margin_tune.pipeline.api.embedding import CLASS_PARTS
from margin_tune.pipeline.cli.flags import add_model_flags, add_output_flags, add_override_flag
from margin_tune.pipeline.outputs.folders import json_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_flags(parser)
    parser.add_argument(
        "--data",
        type=Path,
        help="an .npz file (X, y) or a folder of class subfolders of images "
        "(default: the dataset the model was trained on)",
    )
    add_override_flag(parser, "dataset.* value over the data's config, repeatable")
    parser.add_argument(
        "--classes",
        default="all",
        help=f"{' | '.join(CLASS_PARTS)}: every sample, or those of one part of the model's "
        "class split (default all)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="new .npz file: X (embeddings), y, class_names"
    )
    add_output_flags(parser)


def run(args: argparse.Namespace) -> int:
    result = api.embed(
        args.model,
        args.data,
        args.overrides,
        classes=args.classes,
        out=args.out,
        tracking_uri=args.tracking_uri,
    )
    rows, width = result.embeddings.shape
    if args.json:
        print(
            json_text(
                {
                    "command": "embed",
                    "exit_code": 0,
                    "ok": True,
                    "out": str(args.out.resolve()),
                    "model": str(args.model),
                    "dataset": result.dataset.name,
                    "samples": rows,
                    "embedding_dim": width,
                    "classes": len(set(result.labels.tolist())),
                }
            )
        )
        return 0
    print(
        f"embedded {rows:,} samples of {result.dataset.name} "
        f"({len(set(result.labels.tolist()))} classes) into {width} dimensions with "
        f"{args.model}"
    )
    print(f"wrote {args.out}: X, y, class_names")
    return 0
