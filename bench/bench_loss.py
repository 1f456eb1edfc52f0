"""Times the fused triplet loss against pytorch-metric-learning on one CPU batch.

Both sides do forward and backward of the loss with all triplets mined; ours also counts the
batch's difficulty and feeds the effective-margin reservoir, as the training loop does.
Run with ``python bench/bench_loss.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from pytorch_metric_learning import losses, miners

from trainables.losses import EffectiveMarginReservoir, triplet_step
from trainables.miners import build_miner

CLASSES = 32
PER_CLASS = 8
DIM = 128
MARGIN = 0.2
REPEATS = 20
WARMUP = 3


def _median_seconds(first: Callable[[], None], second: Callable[[], None]) -> tuple[float, float]:
    """Median times of two steps, interleaved so that load from other processes hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for repeat in range(REPEATS + WARMUP):
        for step, record in zip((first, second), times, strict=True):
            start = time.perf_counter()
            step()
            if repeat >= WARMUP:
                record.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(CLASSES * PER_CLASS, DIM, generator=generator).requires_grad_()
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    miner = build_miner("all")
    reservoir = EffectiveMarginReservoir(generator)
    pml_miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="all")
    pml_loss = losses.TripletMarginLoss(margin=MARGIN)

    def ours() -> None:
        step = triplet_step(embeddings, labels, MARGIN, miner)
        step.loss.backward()
        reservoir.add(step.geometry)
        embeddings.grad = None

    def pml() -> None:
        pml_loss(embeddings, labels, pml_miner(embeddings, labels)).backward()
        embeddings.grad = None

    batch = f"batch {CLASSES}x{PER_CLASS}, dim {DIM}"
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t_ours, t_pml = _median_seconds(ours, pml)
        print(
            f"{batch}, {threads} thread(s): fused {t_ours * 1e3:.2f} ms, "
            f"PML {t_pml * 1e3:.2f} ms, speed-up {t_pml / t_ours:.1f}x"
        )


if __name__ == "__main__":
    main()
