"""The triplet geometry of one batch, read off O(B²) tensors instead of B³ triplets.

Every valid triplet (a, p, n) is one positive pair (a, p) and one of anchor a's negatives. Sorting
each anchor's negative distances once turns "how many negatives of a lie below a threshold" into a
binary search and "their summed distance" into a prefix-sum lookup, so miners, the loss and the
difficulty counts never enumerate triplets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from margin_tune.trainables.metric_names import EFFECTIVE_MARGIN_LEVELS, EFFECTIVE_MARGIN_QUANTILES


@dataclass(frozen=True)
class BatchGeometry:
    """Distances and per-anchor sorted negatives of one batch.

    Attributes:
        unit: (B, D) the L2-normalised embeddings; their dot products are the cosine similarities
            that similarity-based losses (InfoNCE) read.
        dist: (B, B) Euclidean distances between the L2-normalised embeddings.
        pos_mask: (B, B) bool, same label and not the diagonal: the valid (anchor, positive) pairs.
        neg_mask: (B, B) bool, different label.
        sorted_neg: (B, B) each anchor's negative distances ascending, +inf-padded at the end;
            keeps the autograd graph so the loss can differentiate through ranks.
        num_neg: (B,) long, number of negatives of each anchor.
        neg_prefix: (B, B + 1) float64 prefix sums of ``sorted_neg`` with a leading 0 (padding
            counts as 0); float64 because differences of large prefix sums lose float32 precision.
    """

    unit: Tensor
    dist: Tensor
    pos_mask: Tensor
    neg_mask: Tensor
    sorted_neg: Tensor
    num_neg: Tensor
    neg_prefix: Tensor
    _rank_cache: dict[tuple[float, bool], Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_embeddings(cls, embeddings: Tensor, labels: Tensor) -> BatchGeometry:
        """Build the geometry of a batch of embeddings (B, D) with integer labels (B,).

        Embeddings are L2-normalised here, even if the model already did: the margin is only
        meaningful on the unit sphere, re-normalising a unit vector changes nothing, and it keeps
        values and gradients identical to pytorch-metric-learning's default ``LpDistance``.
        ``torch.cdist`` masks the gradient where a distance is exactly 0, so coinciding embeddings
        give finite gradients.
        """
        unit = F.normalize(embeddings, p=2, dim=1)
        dist = torch.cdist(unit, unit)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        neg_mask = ~same
        sorted_neg, _ = dist.masked_fill(~neg_mask, torch.inf).sort(dim=1)
        num_neg = neg_mask.sum(dim=1)
        finite = torch.where(torch.isfinite(sorted_neg), sorted_neg, 0.0).double()
        neg_prefix = F.pad(finite.cumsum(dim=1), (1, 0))
        return cls(
            unit=unit,
            dist=dist,
            pos_mask=same & ~eye,
            neg_mask=neg_mask,
            sorted_neg=sorted_neg,
            num_neg=num_neg,
            neg_prefix=neg_prefix,
        )

    def negatives_within(self, offset: float, *, inclusive: bool) -> Tensor:
        """Count, per (anchor, positive) pair, the anchor's negatives with d(a,n) < d(a,p) + offset.

        Memoised per (offset, inclusive): the miner, the loss and the difficulty counts of one
        batch ask for the same two searches.

        Args:
            offset: added to d(a,p); 0 for the hard bound, μ for the margin bound.
            inclusive: count negatives at exactly the threshold too (``<=`` instead of ``<``).

        Returns:
            (B, B) long counts, meaningful where ``pos_mask`` holds; detached, since ranks select
            triplets and carry no gradient.
        """
        key = (offset, inclusive)
        if key not in self._rank_cache:
            thresholds = self.dist.detach() + offset
            self._rank_cache[key] = torch.searchsorted(
                self.sorted_neg.detach(), thresholds, right=inclusive
            )
        return self._rank_cache[key]

    def difficulty_bounds(self, margin: float) -> tuple[Tensor, Tensor]:
        """Rank bounds splitting each (anchor, positive) pair's negatives by difficulty.

        With δ = d(a,n) − d(a,p), ranks [0, hard_end) are hard (δ ≤ 0), [hard_end, easy_start)
        semi-hard (0 < δ < μ) and [easy_start, num_neg) easy. ``easy_start`` is clamped to
        ``hard_end`` so the three always partition the negatives: at μ = 0 this makes every
        negative with δ > 0 easy, and it absorbs d(a,p) + μ rounding to d(a,p) in float32.

        Returns:
            ``(hard_end, easy_start)``, each (B, B) long, meaningful where ``pos_mask`` holds.
        """
        hard_end = self.negatives_within(0.0, inclusive=True)
        easy_start = self.negatives_within(margin, inclusive=False)
        return hard_end, torch.maximum(easy_start, hard_end)


@dataclass(frozen=True)
class DifficultyCounts:
    """Triplet counts by difficulty, kept as 0-d device tensors.

    Summing batches on the device and calling ``to_dict`` once per epoch avoids a host sync per
    batch.
    """

    easy: Tensor
    semihard: Tensor
    hard: Tensor
    valid: Tensor

    @classmethod
    def zero(cls, device: torch.device | str = "cpu") -> DifficultyCounts:
        """The neutral start of an epoch's running sum."""
        zero = torch.zeros((), dtype=torch.long, device=device)
        return cls(easy=zero, semihard=zero, hard=zero, valid=zero)

    def __add__(self, other: DifficultyCounts) -> DifficultyCounts:
        return DifficultyCounts(
            easy=self.easy + other.easy,
            semihard=self.semihard + other.semihard,
            hard=self.hard + other.hard,
            valid=self.valid + other.valid,
        )

    def to_dict(self) -> dict[str, int]:
        """Host integers keyed like the schedulers' ``EpochStats`` fields (one sync)."""
        values = torch.stack([self.easy, self.semihard, self.hard, self.valid]).tolist()
        return dict(zip(("easy", "semihard", "hard", "valid"), values, strict=True))


def difficulty_counts(geometry: BatchGeometry, margin: float) -> DifficultyCounts:
    """Count every valid triplet of the batch as easy, semi-hard or hard under margin μ.

    Counts cover all valid triplets whatever the miner selects, so schedulers see the batch's
    difficulty rather than the miner's choice.
    """
    hard_end, easy_start = geometry.difficulty_bounds(margin)
    # Multiplying by the mask, not indexing with it, keeps the shapes static: no device sync.
    pos = geometry.pos_mask.long()
    num_neg = geometry.num_neg.unsqueeze(1) * pos
    hard = (hard_end * pos).sum()
    below_easy = (easy_start * pos).sum()
    valid = num_neg.sum()
    return DifficultyCounts(
        easy=valid - below_easy, semihard=below_easy - hard, hard=hard, valid=valid
    )


class EffectiveMarginReservoir:
    """Estimates the epoch's quantiles of δ = d(a,n) − d(a,p) over all valid triplets.

    The quantiles are an estimate, not exact: each batch contributes ``samples_per_batch`` valid
    triplets drawn uniformly with replacement (an (a, p) pair with probability ∝ its number of
    negatives, then a uniform negative rank). Each draw stands for n_valid_batch / n_drawn
    triplets, so batches with more valid triplets weigh more; Efraimidis–Spirakis weighted
    reservoir sampling (key = log(U) / w, keep the ``capacity`` largest keys) keeps a sample of the
    epoch with those weights, and the quantiles are the reservoir's plain quantiles. Until the
    reservoir first overflows nothing is dropped, so every batch counts equally; that is exact
    when batches have equal numbers of valid triplets, as P×K batches do. Everything stays on the
    device until ``quantiles``; results are deterministic for a given generator. One object
    covers one epoch.
    """

    def __init__(
        self, generator: torch.Generator, samples_per_batch: int = 2048, capacity: int = 32768
    ) -> None:
        if samples_per_batch < 1 or capacity < 1:
            raise ValueError(
                f"samples_per_batch and capacity must be positive, got "
                f"{samples_per_batch} and {capacity}"
            )
        self.generator = generator
        self.samples_per_batch = samples_per_batch
        self.capacity = capacity
        self._keys = torch.empty(0, device=generator.device)
        self._deltas = torch.empty(0, device=generator.device)

    def add(self, geometry: BatchGeometry) -> None:
        """Add a sample of the batch's valid triplets without a host sync."""
        pos = geometry.pos_mask.flatten()
        anchors = torch.arange(len(pos), device=pos.device) // len(geometry.num_neg)
        weights = (geometry.num_neg[anchors] * pos).double()
        n_valid = weights.sum()
        # With no valid triplet, draw from a uniform dummy distribution and discard via the key.
        pairs = torch.multinomial(
            weights + (n_valid == 0),
            self.samples_per_batch,
            replacement=True,
            generator=self.generator,
        )
        anchor = anchors[pairs]
        uniform = torch.rand(2, self.samples_per_batch, generator=self.generator, device=pos.device)
        num_neg = geometry.num_neg[anchor]
        # The clamp guards against float rounding of U·n up to n.
        rank = torch.minimum((uniform[0] * num_neg).long(), (num_neg - 1).clamp(min=0))
        d_neg = geometry.sorted_neg.detach()[anchor, rank]
        d_pos = geometry.dist.detach().flatten()[pairs]
        weight = n_valid / self.samples_per_batch
        keys = uniform[1].clamp(min=torch.finfo(uniform.dtype).tiny).log() / weight
        keys = torch.where(n_valid > 0, keys.float(), -torch.inf)
        self._merge(keys, (d_neg - d_pos).float())

    def _merge(self, keys: Tensor, deltas: Tensor) -> None:
        keys = torch.cat([self._keys, keys])
        deltas = torch.cat([self._deltas, deltas])
        if len(keys) > self.capacity:
            keys, kept = keys.topk(self.capacity)
            deltas = deltas[kept]
        self._keys, self._deltas = keys, deltas

    def __len__(self) -> int:
        """Number of valid triplets kept, at most ``capacity`` (syncs)."""
        return int((self._keys > -torch.inf).sum())

    def quantiles(self) -> dict[str, float]:
        """p10, p50 and p90 of δ over the epoch; NaN when no valid triplet was seen."""
        deltas = self._deltas[self._keys > -torch.inf]
        levels = tuple(level / 100 for level in EFFECTIVE_MARGIN_LEVELS)
        if len(deltas) == 0:
            values = [torch.nan] * len(levels)
        else:
            values = torch.quantile(deltas, torch.tensor(levels, device=deltas.device)).tolist()
        return dict(zip(EFFECTIVE_MARGIN_QUANTILES, values, strict=True))
