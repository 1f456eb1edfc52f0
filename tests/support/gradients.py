"""Comparing a loss with a reference: value and gradient with respect to the embeddings."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def loss_and_grad(embeddings: Tensor, compute: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    leaf = embeddings.clone().requires_grad_()
    loss = compute(leaf)
    loss.backward()
    assert leaf.grad is not None
    return loss.detach(), leaf.grad


def assert_matches(actual: tuple[Tensor, Tensor], expected: tuple[Tensor, Tensor]) -> None:
    """Loss value and gradient agree to 1e-5."""
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0.0)
