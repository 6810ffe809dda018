"""Tversky loss (Salehi et al.: Tversky loss function for image segmentation using 3D fully
convolutional deep networks, MLMI 2017)."""

from __future__ import annotations

import torch
from pydantic import Field

from medseg.losses.base import LabelsAsChannel, LossParams, region_kwargs


class TverskyParams(LossParams):
    """Parameters of ``tversky`` (``class_weights`` is accepted and unused)."""

    alpha: float = Field(0.3, ge=0, le=1, description="weight of false positives")
    beta: float = Field(0.7, ge=0, le=1, description="weight of false negatives")


def build_tversky(params: TverskyParams, weight: torch.Tensor | None) -> torch.nn.Module:
    """MONAI ``TverskyLoss``: ``1 - TP / (TP + alpha FP + beta FN)`` on softmax probabilities."""
    from monai.losses import TverskyLoss

    return LabelsAsChannel(TverskyLoss(**region_kwargs(params), alpha=params.alpha, beta=params.beta))
