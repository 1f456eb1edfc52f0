"""The loss protocol: one batch's geometry and margin in, a total and its two terms out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

from torch import Tensor

from margin_tune.trainables.config import LossConfig
from margin_tune.trainables.geometry import (
    BatchGeometry,
    DifficultyCounts,
    difficulty_counts,
)
from margin_tune.trainables.miners.base import TripletMiner


class LossTerms(NamedTuple):
    """A batch's loss and the two terms a contrastive loss splits into (Sors et al.).

    ``positive`` pulls matching pairs together, ``entropy`` pushes the rest apart. Both are
    unweighted, so their logged values compare across balances.
    """

    total: Tensor
    positive: Tensor
    entropy: Tensor


class Loss(ABC):
    """Turns one batch's geometry and the scheduler's margin μ into a loss to minimise.

    Every loss is built from its config and the trial's miner; pair losses use every pair of the
    batch, which is what the ``all`` miner selects, so they admit only that miner (``miners``).
    ``difficulty`` counts what the margin scheduler reads: by default every valid triplet under
    μ, so a loss that does not use μ still logs comparable statistics.
    """

    #: Miners the loss accepts; None: every registered miner.
    miners: ClassVar[tuple[str, ...] | None] = None
    #: Whether μ enters the loss; one without a margin needs the ``constant`` scheduler.
    uses_margin: ClassVar[bool] = True

    def __init__(self, config: LossConfig, miner: TripletMiner) -> None:
        self.config = config
        self.miner = miner

    @abstractmethod
    def __call__(self, geometry: BatchGeometry, margin: float) -> LossTerms:
        """The batch's loss under margin μ."""

    def difficulty(self, geometry: BatchGeometry, margin: float) -> DifficultyCounts:
        """Easy / semi-hard / hard counts of the batch for the margin scheduler."""
        return difficulty_counts(geometry, margin)


class BalancedLoss(Loss):
    """A contrastive loss as a weighted sum of its positive and entropy terms.

    ``total = 2·(λ·positive + (1 − λ)·entropy)`` with λ = ``loss.balance`` in [0, 1]: λ = 0.5
    weighs both terms 1, as pytorch-metric-learning does, so values equal PML's there; λ = 1
    (0) keeps only the positive (entropy) term, doubled. A convex combination keeps the search
    range bounded, and the factor 2 keeps PML's scale at the midpoint.
    """

    miners = ("all",)

    def __call__(self, geometry: BatchGeometry, margin: float) -> LossTerms:
        positive, entropy = self.terms(geometry, margin)
        balance = self.config.balance
        total = 2 * (balance * positive + (1 - balance) * entropy)
        return LossTerms(total, positive, entropy)

    @abstractmethod
    def terms(self, geometry: BatchGeometry, margin: float) -> tuple[Tensor, Tensor]:
        """The unweighted ``(positive, entropy)`` terms of the batch, each a 0-d tensor."""


def masked_mean(values: Tensor, mask: Tensor, *, nonzero: bool = False) -> Tensor:
    """Mean of ``values`` where ``mask`` holds; with ``nonzero`` over the entries > 0 only.

    ``nonzero`` is PML's ``AvgNonZeroReducer``. With nothing to average the result is 0, still
    attached to the graph. Masking by ``where`` keeps shapes static (no device sync).
    """
    kept = mask & (values > 0) if nonzero else mask
    return values.where(kept, 0).sum() / kept.sum().clamp(min=1)
