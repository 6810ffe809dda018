"""Focal loss (Lin et al.: Focal Loss for Dense Object Detection, ICCV 2017)."""

from __future__ import annotations

import torch
from pydantic import Field

from medseg.losses.base import LabelsAsChannel, LossParams, foreground_weight


class FocalParams(LossParams):
    """Parameters of ``focal`` (``batch_dice`` is accepted and unused)."""

    gamma: float = Field(2.0, ge=0, description="focal gamma (0: cross-entropy)")


def build_focal(params: FocalParams, weight: torch.Tensor | None) -> torch.nn.Module:
    """MONAI ``FocalLoss`` on softmax probabilities; without ``include_background`` MONAI drops the
    background channel before the softmax (background voxels then cost nothing)."""
    from monai.losses import FocalLoss

    return LabelsAsChannel(
        FocalLoss(
            include_background=params.include_background,
            to_onehot_y=True,
            gamma=params.gamma,
            weight=foreground_weight(weight, params.include_background),
            use_softmax=True,
        )
    )
