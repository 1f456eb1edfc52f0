"""The InfoNCE / NT-Xent loss, split into its alignment and entropy terms (Sors et al.)."""

from __future__ import annotations

import torch
from torch import Tensor

from margin_tune.trainables.geometry import BatchGeometry
from margin_tune.trainables.losses.base import BalancedLoss, masked_mean


class NTXentLoss(BalancedLoss):
    """Per positive pair: −log(e^{s(a,p)/τ} / (e^{s(a,p)/τ} + Σₙ e^{s(a,n)/τ})), τ = temperature.

    s is the cosine similarity of the embeddings. The log splits into the alignment term
    −s(a,p)/τ (the positive term) and the entropy term log(e^{s(a,p)/τ} + Σₙ e^{s(a,n)/τ}), each
    averaged over all positive pairs (every pair has a positive loss when the batch holds two
    classes, so both reductions agree). At balance 0.5 this is PML's ``NTXentLoss(temperature)``.
    There is no margin: μ does not enter, so the config requires the ``constant`` scheduler and
    the logged difficulty statistics are the triplet ones under that fixed μ.
    """

    uses_margin = False

    def terms(self, geometry: BatchGeometry, margin: float) -> tuple[Tensor, Tensor]:
        logits = geometry.unit @ geometry.unit.T / self.config.temperature
        # An anchor without negatives gets -inf here, so its entropy term is its alignment's
        # opposite and its loss 0, as in PML; ``where`` keeps the -inf rows out of the gradient.
        negatives = logits.where(geometry.neg_mask, -torch.inf).logsumexp(dim=1, keepdim=True)
        entropy = torch.logaddexp(logits, negatives)
        return (
            masked_mean(-logits, geometry.pos_mask),
            masked_mean(entropy, geometry.pos_mask),
        )
