"""(Class-weighted) cross-entropy over softmax logits."""

from __future__ import annotations

import torch

from medseg.losses.base import LossParams


class CEParams(LossParams):
    """Parameters of ``ce``: only ``class_weights`` has an effect (given, or computed from the training
    labels with ``loss.class_weighting``, :mod:`medseg.losses.class_weights`)."""


class CrossEntropy(torch.nn.Module):
    """``torch.nn.functional.cross_entropy`` taking labels ``[B, *spatial]`` or ``[B, 1, *spatial]``.

    With ``weight`` (``[C]``), the mean is over voxels weighted by their target class's weight
    (divided by the sum of those weights), exactly as torch computes it.
    """

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == logits.ndim:
            labels = labels[:, 0]
        return torch.nn.functional.cross_entropy(logits, labels.long(), weight=self.weight)


def build_ce(params: CEParams, weight: torch.Tensor | None) -> torch.nn.Module:
    """Cross-entropy with one weight per class (background included) when given."""
    return CrossEntropy(weight)
