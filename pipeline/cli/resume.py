"""``margin-tune resume DIR``: continue whatever command wrote DIR, from its manifest.

Each resumable command registers one function that takes the directory, its manifest and an
optional Ray address; the manifest's ``command`` field picks it, so one verb resumes a sweep, a
comparison or an ablation alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from margin_tune.pipeline.cli import ablate, compare, tune
from margin_tune.pipeline.cli.flags import add_output_flags
from margin_tune.pipeline.outputs.folders import output_lock
from margin_tune.pipeline.outputs.manifest import read_manifest

#: (directory, its manifest, a Ray address or None, print JSON) → exit code.
Resumer = Callable[[Path, dict[str, Any], str | None, bool], int]

RESUMERS: dict[str, Resumer] = {
    "tune": tune.resume_from_manifest,
    "compare": compare.resume_from_manifest,
    "ablate": ablate.resume_from_manifest,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", type=Path, metavar="DIR", help="the --out directory of tune/compare/ablate"
    )
    parser.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    add_output_flags(parser)


def run(args: argparse.Namespace) -> int:
    out: Path = args.directory
    manifest = read_manifest(out, allowed=tuple(RESUMERS))
    with output_lock(out):  # one command per directory: two resumes would run trials twice
        return RESUMERS[manifest["command"]](out, manifest, args.address, args.json)
