"""P14: on a CUDA machine, training steps in each precision and a whole CUB-sized epoch.

The steps of :mod:`bench.p13_backbone_step` on the GPU (ResNet-18 and ResNet-50, fp32, bf16 and
bf16 + channels_last, batch 128), then a real two-epoch trial per backbone on a CUB-200-2011-sized
archive of photo-sized JPEGs with the given split and one ``DataLoader`` worker per core but two:
the README's expected time per trial comes from these. Without a CUDA device the figure is
reported as not measured. Run: ``python -m bench --only P14``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from bench.common import Figure
from bench.image_archive import write_photo_archive
from bench.p13_backbone_step import (
    CUB_CLASSES,
    CUB_PER_CLASS,
    STEPS,
    TINY_CLASSES,
    TINY_PER_CLASS,
    WARMUP,
    epoch_rows,
    step_rows,
)
from bench.tables import markdown_table

WHAT = "on CUDA: backbone steps per precision, and a two-epoch trial on a CUB-sized archive"


def measure(quick: bool) -> Figure:
    if not torch.cuda.is_available():
        return Figure(
            id="P14",
            what=WHAT,
            target="report",
            value="not measured: no CUDA device on this machine",
            met=None,
            details=f"torch {torch.__version__}. Run `python -m bench --only P14` on CUDA.",
        )
    with tempfile.TemporaryDirectory(prefix="bench-p14-") as scratch:
        tiny = write_photo_archive(Path(scratch) / "tiny", TINY_CLASSES, TINY_PER_CLASS)
        steps = pd.DataFrame(step_rows(tiny, "cuda"))
        details = [
            f"Steps on {torch.cuda.get_device_name(0)} ({os.cpu_count()} CPU cores), median of "
            f"{STEPS} after {WARMUP} warm-up steps:",
            "",
            markdown_table(steps),
        ]
        if not quick:
            cub = write_photo_archive(Path(scratch) / "cub", CUB_CLASSES, CUB_PER_CLASS)
            epochs = pd.DataFrame(epoch_rows(cub))
            details += [
                "",
                "Two-epoch trials on a CUB-sized archive (bf16, channels_last, batch 128):",
                "",
                markdown_table(epochs),
            ]
    best = steps.loc[steps["images/s"].idxmax()]
    fp32 = steps.iloc[0]
    value = (
        f"ResNet-18 batch 128: fp32 {fp32['images/s']:.0f} images/s, "
        f"{best['precision']}{' + channels_last' if best['channels_last'] else ''} "
        f"{best['images/s']:.0f} ({torch.cuda.get_device_name(0)})"
    )
    return Figure(
        id="P14", what=WHAT, target="report", value=value, met=None, details="\n".join(details)
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
