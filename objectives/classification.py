"""Objectives that need labels: task loss and accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mpsearch.data import Batch

from ._base import Objective, register_objective


def _flat(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level outputs (N, T, C) with labels (N, T) score like N*T classification samples."""
    return out.reshape(-1, out.shape[-1]), y.reshape(-1)


@register_objective
class CrossEntropy(Objective):
    name = "cross_entropy"
    needs_labels = True

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(*_flat(out.float(), batch.y))


@register_objective
class Accuracy(Objective):
    name = "accuracy"
    higher_is_better = True
    needs_labels = True

    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        o, y = _flat(out, batch.y)
        return (o.argmax(-1) == y).float().mean()
