"""The Siamese embedding network: one trunk with shared weights, unit-norm output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SiameseEmbedder(nn.Module):
    """Wraps a trunk and L2-normalises its output.

    Every sample of a triplet goes through this one module, so the anchor, positive and negative
    branches share weights by construction. Unit norm bounds distances to [0, 2], which keeps a
    margin μ meaningful across trials.
    """

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # float32 before normalising: under bf16/fp16 autocast a unit norm would be off by ~1e-2
        return F.normalize(self.trunk(inputs).float(), dim=1)
