"""Dice + cross-entropy (Milletari et al. 2016 soft Dice; the nnU-Net compound, Isensee et al. 2021)."""

from __future__ import annotations

import torch
from pydantic import Field

from medseg.losses.base import LabelsAsChannel, LossParams, region_kwargs


class DiceCEParams(LossParams):
    """Parameters of ``dice_ce``."""

    lambda_dice: float = Field(1.0, ge=0, description="weight of the Dice term")
    lambda_ce: float = Field(1.0, ge=0, description="weight of the cross-entropy term")


def build_dice_ce(params: DiceCEParams, weight: torch.Tensor | None) -> torch.nn.Module:
    """MONAI ``DiceCELoss`` on softmax probabilities; class weights (all classes) on the CE term."""
    from monai.losses import DiceCELoss

    return LabelsAsChannel(
        DiceCELoss(
            **region_kwargs(params),
            lambda_dice=params.lambda_dice,
            lambda_ce=params.lambda_ce,
            weight=weight,
        )
    )
