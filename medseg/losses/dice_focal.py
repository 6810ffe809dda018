"""Dice + focal loss, the default (Milletari et al. 2016 soft Dice; Lin et al. 2017 focal loss)."""

from __future__ import annotations

import torch
from pydantic import Field

from medseg.losses.base import LabelsAsChannel, LossParams, foreground_weight, region_kwargs


class DiceFocalParams(LossParams):
    """Parameters of ``dice_focal``."""

    gamma: float = Field(2.0, ge=0, description="focal gamma")
    lambda_dice: float = Field(1.0, ge=0, description="weight of the Dice term")
    lambda_focal: float = Field(1.0, ge=0, description="weight of the focal term")


def build_dice_focal(params: DiceFocalParams, weight: torch.Tensor | None) -> torch.nn.Module:
    """MONAI ``DiceFocalLoss``: soft Dice on softmax probabilities plus a focal term taken one
    class against the rest on sigmoids of the logits (as MONAI computes it); class weights on both."""
    from monai.losses import DiceFocalLoss

    return LabelsAsChannel(
        DiceFocalLoss(
            **region_kwargs(params),
            gamma=params.gamma,
            lambda_dice=params.lambda_dice,
            lambda_focal=params.lambda_focal,
            weight=foreground_weight(weight, params.include_background),
        )
    )
