"""``python -m bench``: measure the performance figures P1–P14 and write ``bench/RESULTS.md``.

Usage: ``python -m bench [--only P1,P3] [--quick] [--baseline] [--out bench/RESULTS.md]``. Each
figure is a
module with ``measure(quick) -> Figure``; every figure is a ratio (or a count) taken within one
run of its module, so a noisy machine slows both sides alike. Results are kept in
``results.json`` beside the markdown: ``--only`` replaces the figures it measures and keeps
the others, each row saying when, how and on what it was measured. A figure that raises is
recorded as an error (exit code 1) without losing the others.

``--baseline`` records the figures as the "before" of a change instead (``baselines.json``):
measure them on the commit before it, e.g. from a ``git worktree`` of that commit with this
``bench/`` copied in. Each figure with a baseline then shows both, each with its commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import Figure, compile_package

MODULES = {
    "P1": "bench.p1_sweep_vs_pool",
    "P2": "bench.p2_epoch_overhead",
    "P3": "bench.p3_fused_loss",
    "P4": "bench.p4_search_efficiency",
    "P5": "bench.p5_tracking",
    "P6": "bench.p6_bookkeeping",
    "P7": "bench.p7_memory",
    "P8": "bench.p8_fractional_gpu",
    "P9": "bench.p9_startup",
    "P10": "bench.p10_report",
    "P11": "bench.p11_model_logging",
    "P12": "bench.p12_image_loader",
    "P13": "bench.p13_backbone_step",
    "P14": "bench.p14_gpu_epoch",
}
PACKAGES = ("torch", "ray", "optuna", "mlflow", "pytorch-metric-learning", "numpy", "pandas")
EXIT_BAD_INPUT = 2


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated ids of {', '.join(MODULES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks, not figures")
    parser.add_argument(
        "--baseline", action="store_true", help="record as the figures before a change"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "RESULTS.md")
    arguments = parser.parse_args(argv)
    if arguments.only is None:
        arguments.ids = list(MODULES)
        return arguments
    ids = [item.strip().upper() for item in arguments.only.split(",") if item.strip()]
    unknown = [item for item in ids if item not in MODULES]
    if unknown or not ids:
        parser.exit(
            EXIT_BAD_INPUT,
            f"python -m bench: error: --only: unknown id {unknown[0] if unknown else '(none)'!r}; "
            f"allowed: {', '.join(MODULES)}\n",
        )
    arguments.ids = ids
    return arguments


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
        "git_commit": _git_commit(),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_one(identifier: str, quick: bool, command: str, setting: dict[str, Any]) -> dict[str, Any]:
    """Measure one figure; an exception becomes a failed row, with its message."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        figure = importlib.import_module(MODULES[identifier]).measure(quick)
    except Exception as error:  # a broken figure must not lose the others
        traceback.print_exc()
        figure = Figure(identifier, MODULES[identifier], "", f"error: {error}", False, "")
    return {
        **dataclasses.asdict(figure),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": round(load, 2),
        "machine": setting,
    }


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def render(rows: dict[str, dict[str, Any]], baselines: dict[str, dict[str, Any]]) -> str:
    ordered = [rows[identifier] for identifier in MODULES if identifier in rows]
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench` (see `bench/__main__.py`); each row says when and how it was",
        "measured. Every figure is a ratio or a count taken within one run of its module. Where a",
        "change was measured before and after, *before* gives the figure on the commit before it.",
        "",
        "| id | what | target | value | met | measured | before |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ordered:
        met = {True: "yes", False: "no", None: "—"}[row["met"]]
        quick = " (quick)" if row["quick"] else ""
        before = baselines.get(row["id"])
        was = f"{before['value']} (commit {before['machine']['git_commit']})" if before else ""
        lines.append(
            f"| {row['id']} | {row['what']} | {row['target']} | {row['value']} | {met} | "
            f"{row['measured_at'][:16].replace('T', ' ')}{quick} | {was} |"
        )
    for row in ordered:
        lines += ["", f"## {row['id']}: {row['what']}", "", *_measured(row)]
        before = baselines.get(row["id"])
        if before:
            lines += [
                "",
                f"### Before: commit {before['machine']['git_commit']}",
                "",
                f"Value then: {before['value']}.",
                "",
                *_measured(before),
            ]
    return "\n".join(lines) + "\n"


def _measured(row: dict[str, Any]) -> list[str]:
    setting = row["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in setting["versions"].items())
    return [
        row["details"],
        "",
        f"Measured {row['measured_at']} in {row['seconds']} s by `{row['command']}` "
        f"(load average {row['load_before']} before it) on {setting['cpu']}, "
        f"{setting['logical_cores']} logical cores, {setting['memory_gib']} GiB, CUDA "
        f"{setting['cuda']}, {setting['os']}; Python {setting['python']}, {versions}; "
        f"commit {setting['git_commit']}.",
    ]


def _load(path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    out: Path = arguments.out
    out.parent.mkdir(parents=True, exist_ok=True)
    store, baseline_store = out.with_name("results.json"), out.with_name("baselines.json")
    rows, baselines = _load(store), _load(baseline_store)
    command = " ".join(["python -m bench", *argv])
    setting = machine()
    compile_package()  # as installed: see its docstring
    failed = False
    for identifier in arguments.ids:
        print(f"== {identifier} ({MODULES[identifier]})", flush=True)
        row = run_one(identifier, arguments.quick, command, setting)
        failed |= row["value"].startswith("error:")
        chosen, path = (baselines, baseline_store) if arguments.baseline else (rows, store)
        chosen[identifier] = row
        write_atomically(path, json.dumps(chosen, indent=2, ensure_ascii=False) + "\n")
        write_atomically(out, render(rows, baselines))
        print(f"{identifier}: {row['value']} (target {row['target']})", flush=True)
    print(f"wrote {out} and {store}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
