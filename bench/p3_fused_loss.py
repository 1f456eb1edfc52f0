"""P3: the fused triplet step against pytorch-metric-learning on one CPU batch.

Ours: one shared geometry gives the loss (all valid triplets, mean over non-zero terms), the
easy / semi-hard / hard counts and a sample for the effective-margin quantiles, forward and
backward, as the training loop runs it. PML: ``TripletMarginLoss`` on the triplets of
``TripletMarginMiner("all")``, forward and backward (the reference); and, for the same
information as ours, PML plus its miner once per difficulty to count them. Both sides are timed
interleaved, so load from other processes hits both alike; values and gradients are checked
equal first. Run: ``python -m bench.p3_fused_loss [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import pandas as pd
import torch
from pytorch_metric_learning import losses, miners

from bench.common import Figure
from bench.tables import markdown_table
from margin_tune.trainables.losses import EffectiveMarginReservoir, triplet_step
from margin_tune.trainables.miners import build_miner

CLASSES = 32
PER_CLASS = 8
DIM = 128
MARGIN = 0.2
TARGET_SPEEDUP = 3.0
DIFFICULTIES = ("easy", "semihard", "hard")


def median_seconds(steps: list[Callable[[], None]], repeats: int, warmup: int) -> list[float]:
    """Median wall time of each step, the steps interleaved within every repeat."""
    times: list[list[float]] = [[] for _ in steps]
    for repeat in range(repeats + warmup):
        for step, record in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            if repeat >= warmup:
                record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def check_equal(embeddings: torch.Tensor, labels: torch.Tensor) -> str:
    """Loss, gradient and difficulty counts of ours against PML's; raises if they differ."""
    step = triplet_step(embeddings, labels, MARGIN, build_miner("all"))
    (ours_grad,) = torch.autograd.grad(step.loss, embeddings)
    pml_loss = losses.TripletMarginLoss(margin=MARGIN)(
        embeddings, labels, miners.TripletMarginMiner(margin=MARGIN)(embeddings, labels)
    )
    (pml_grad,) = torch.autograd.grad(pml_loss, embeddings)
    torch.testing.assert_close(step.loss, pml_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours_grad, pml_grad, rtol=1e-4, atol=1e-7)
    pml_counts = {
        kind: len(
            miners.TripletMarginMiner(margin=MARGIN, type_of_triplets=kind)(embeddings, labels)[0]
        )
        for kind in DIFFICULTIES
    }
    ours_counts = {kind: int(getattr(step.counts, kind)) for kind in DIFFICULTIES}
    if ours_counts != pml_counts:
        raise AssertionError(f"difficulty counts differ: ours {ours_counts}, PML {pml_counts}")
    return (
        f"equal: loss {step.loss.item():.6f} (PML {pml_loss.item():.6f}), gradients within "
        f"rtol 1e-4, counts {ours_counts} (PML miners agree)"
    )


def measure(quick: bool) -> Figure:
    repeats, warmup = (10, 2) if quick else (60, 5)
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(CLASSES * PER_CLASS, DIM, generator=generator).requires_grad_()
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    equality = check_equal(embeddings, labels)
    miner = build_miner("all")
    reservoir = EffectiveMarginReservoir(torch.Generator().manual_seed(1))
    pml_miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="all")
    count_miners = [
        miners.TripletMarginMiner(margin=MARGIN, type_of_triplets=kind) for kind in DIFFICULTIES
    ]
    pml_loss = losses.TripletMarginLoss(margin=MARGIN)

    def ours() -> None:
        step = triplet_step(embeddings, labels, MARGIN, miner)
        step.loss.backward()
        reservoir.add(step.geometry)
        embeddings.grad = None

    def pml() -> None:
        pml_loss(embeddings, labels, pml_miner(embeddings, labels)).backward()
        embeddings.grad = None

    def pml_with_counts() -> None:
        pml()
        for count_miner in count_miners:
            len(count_miner(embeddings, labels)[0])

    rows = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t_ours, t_pml, t_counts = median_seconds([ours, pml, pml_with_counts], repeats, warmup)
            rows.append(
                {
                    "torch threads": threads,
                    "ours ms": t_ours * 1e3,
                    "PML loss+miner ms": t_pml * 1e3,
                    "PML + counts ms": t_counts * 1e3,
                    "speed-up": t_pml / t_ours,
                    "speed-up vs PML + counts": t_counts / t_ours,
                }
            )
    finally:
        torch.set_num_threads(previous)
    table = pd.DataFrame(rows)
    headline = float(table["speed-up"].iloc[0])
    return Figure(
        id="P3",
        what=f"fused triplet step vs PML loss + miner (batch {CLASSES}×{PER_CLASS}, dim {DIM})",
        target=f"≥ {TARGET_SPEEDUP:g}× faster, equal values",
        value=f"{headline:.1f}× at 1 thread, {table['speed-up'].iloc[1]:.1f}× at 2; values equal",
        met=headline >= TARGET_SPEEDUP,
        details="\n".join(
            [
                f"Forward + backward, median of {repeats} interleaved repeats after {warmup} "
                f"warm-up, margin {MARGIN}. Ours also counts easy/semi-hard/hard triplets and "
                "samples effective margins for the epoch's quantiles; 'PML + counts' adds the "
                "three PML miner calls that give the same counts.",
                f"Check before timing: {equality}.",
                "",
                markdown_table(table),
            ]
        ),
    )


if __name__ == "__main__":
    print(measure(quick="--quick" in sys.argv))
