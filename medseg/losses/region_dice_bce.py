"""Region Dice + binary cross-entropy on sigmoid outputs, one output per region (nnU-Net's
region-based training, Isensee et al., Nature Methods 2021; soft Dice, Milletari et al. 2016).

Regions may overlap, so each output channel is its own binary problem: channel ``r`` is
``sigmoid(logit_r)``, compared with region ``r``'s target by a soft Dice and a binary
cross-entropy. Pipelines with ``regions`` train with this loss; the trainer wraps it in
:class:`RegionTargets`, which turns the integer label maps into region targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from medseg.config.schema import RegionConfig
from medseg.data.regions import regions_to_targets
from medseg.losses.base import LossParams

#: Smoothing of the soft Dice (numerator and denominator), as MONAI's default.
SMOOTH = 1e-5


class RegionDiceBCEParams(LossParams):
    """Parameters of ``region_dice_bce`` (``class_weights``: one weight per output channel;
    ``include_background`` only matters for integer labels, whose channel 0 is background)."""

    lambda_dice: float = Field(1.0, ge=0, description="weight of the Dice term")
    lambda_bce: float = Field(1.0, ge=0, description="weight of the binary cross-entropy term")


class RegionDiceBCE(torch.nn.Module):
    """``lambda_dice * Dice + lambda_bce * BCE`` of sigmoid outputs, channel by channel.

    Dice is the soft Dice loss of MONAI's ``DiceLoss(sigmoid=True)``: per channel (summed over
    the batch too when ``batch_dice``) ``1 - (2 sum(p y) + 1e-5) / (sum p + sum y + 1e-5)`` with
    ``p = sigmoid(logit)``, then the mean; BCE is the mean over channels and voxels of
    ``-(y log p + (1 - y) log(1 - p))``. Class weights weight each channel of both terms.

    Call with logits ``[B, R, *spatial]`` and either float region targets ``[B, R, *spatial]``
    (0/1, what :class:`RegionTargets` makes) or integer labels ``[B, *spatial]`` /
    ``[B, 1, *spatial]``, one-hot encoded so that each class is its own region (channel 0,
    background, left out unless ``include_background``). Returns a scalar.
    """

    def __init__(self, params: RegionDiceBCEParams, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.params = params
        self.register_buffer("weight", weight if weight is not None else torch.empty(0), persistent=False)

    def _targets(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(float targets [B, R, *spatial], first channel counted) of region targets or labels."""
        if target.is_floating_point() and target.shape == logits.shape:
            return target, 0
        if target.ndim == logits.ndim:
            target = target[:, 0]
        onehot = torch.nn.functional.one_hot(target.long(), logits.shape[1]).movedim(-1, 1)
        return onehot.to(logits.dtype), 0 if self.params.include_background else 1

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y, first = self._targets(logits, target)
        logits, y = logits[:, first:], y[:, first:]
        weight = self.weight[first:].to(logits) if self.weight.numel() else logits.new_ones(logits.shape[1])
        total = logits.new_zeros(())
        if self.params.lambda_dice:
            p = logits.sigmoid()
            dims = (0, *range(2, p.ndim)) if self.params.batch_dice else tuple(range(2, p.ndim))
            dice = 1 - (2 * (p * y).sum(dims) + SMOOTH) / (p.sum(dims) + y.sum(dims) + SMOOTH)
            total = total + self.params.lambda_dice * (dice * weight).mean()
        if self.params.lambda_bce:
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            total = (
                total + self.params.lambda_bce * (bce * weight.view(1, -1, *([1] * (bce.ndim - 2)))).mean()
            )
        return total


class RegionTargets(torch.nn.Module):
    """Feeds a region loss: integer labels ``[B, *spatial]`` (or ``[B, 1, *spatial]``) become
    region targets ``[B, R, *spatial]`` (float, 0/1) before ``loss`` sees them.

    Wrap the loss, then deep supervision around this (its labels are downsampled as integers).

    Args:
        loss: A region loss, e.g. :class:`RegionDiceBCE`.
        regions: The pipeline's regions, in output-channel order.
    """

    def __init__(self, loss: torch.nn.Module, regions: Sequence[RegionConfig]) -> None:
        super().__init__()
        self.loss = loss
        self.regions = list(regions)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == logits.ndim:
            labels = labels[:, 0]
        return self.loss(logits, regions_to_targets(labels.long(), self.regions, channel_axis=1))


def build_region_dice_bce(params: RegionDiceBCEParams, weight: torch.Tensor | None) -> torch.nn.Module:
    """:class:`RegionDiceBCE` with ``class_weights`` (one per output channel) on both terms."""
    return RegionDiceBCE(params, weight)
