"""Fully convolutional networks, FCN-32s/16s/8s (Long, Shelhamer, Darrell: "Fully Convolutional
Networks for Semantic Segmentation", CVPR 2015; Shelhamer, Long, Darrell, IEEE TPAMI 39(4), 2017),
2D and 3D, trained from scratch.

A VGG-style encoder (:class:`~medseg.models._vgg.VGGEncoder`: stages of 3x3
conv-norm-act, each closed by max pooling) feeds the convolutionalised
classifier (fc6: a kxk conv, fc7: a 1x1 conv, both with dropout) and a 1x1
score layer. The ``variant`` picks the skip architecture:

- ``32s``: the final score map (stride 32 with the default five stride-2 stages) is upsampled
  to the input in one step;
- ``16s``: it is upsampled x2 and summed with a 1x1 score of the pool4 features (the
  second-to-last stage), then upsampled x16;
- ``8s``: that sum is upsampled x2 again and summed with a score of the pool3 features (the
  third-to-last stage), then upsampled x8.

With other ``strides`` the factors follow the strides of the stages (e.g. three stride-2 stages:
the 8s output is fused at stride 2), so small 3D patches can use a total stride below 32.
Upsampling is a learnable transposed convolution initialised to linear interpolation (the
paper's "deconvolution"; it kept the final x8 fixed) or fixed interpolation (``upsample``).
"""

from __future__ import annotations

from enum import Enum

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import conv_type
from medseg.models._params import PerAxis, check_axis_value, prod_per_axis, spatial_dims_of
from medseg.models._vgg import Upsample, UpsampleMode, VGGEncoder, VGGParams, fc_layers


class FCNVariant(str, Enum):
    """FCN skip architecture: how many pooled encoder maps are fused into the score."""

    S32 = "32s"
    S16 = "16s"
    S8 = "8s"

    @property
    def skips(self) -> int:
        """Number of skip branches (0, 1 or 2)."""
        return {"32s": 0, "16s": 1, "8s": 2}[self.value]


class FCNParams(VGGParams):
    """Parameters of ``fcn`` (paper values in brackets)."""

    variant: FCNVariant = Field(
        FCNVariant.S8,
        description="skip architecture: 32s (no skip), 16s (+ pool4 score), 8s (+ pool4 and pool3 "
        "scores); pool4/pool3 are the outputs of the second- and third-to-last stages",
    )
    fc_kernel_size: PerAxis = Field(
        3, description="kernel of the convolutional fc6 (odd; int or one per axis) [7]"
    )
    upsample: UpsampleMode = Field(
        UpsampleMode.TRANSPOSED,
        description="transposed: learnable transposed convs initialised bilinear [paper]; "
        "interpolate: fixed linear interpolation",
    )

    @field_validator("fc_kernel_size")
    @classmethod
    def _fc_kernel(cls, v: PerAxis, info: ValidationInfo) -> PerAxis:
        check_axis_value(v, spatial_dims_of(info), "fc_kernel_size")
        if any(k % 2 == 0 for k in ((v,) if isinstance(v, int) else v)):
            raise ValueError(f"fc_kernel_size must be odd, got {v}")
        return v

    @model_validator(mode="after")
    def _check_variant(self) -> FCNParams:
        need = FCNVariant(self.variant).skips + 1
        if len(self.features) < need:
            raise ValueError(
                f"variant {FCNVariant(self.variant).value} fuses {need} stages' outputs and needs at "
                f"least {need} stages (features entries), got {len(self.features)}"
            )
        return self


def conv1x1(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """A 1x1 convolution with bias (a score layer)."""
    return conv_type(spatial_dims)(in_channels, out_channels, 1)


class FCN(nn.Module):
    """FCN-32s/16s/8s; see :class:`FCNParams`.

    ``forward(x[B, C_in, *spatial])`` gives logits ``[B, out_channels, *spatial]`` for a spatial
    size that is a multiple of ``p.divisor`` (the wrapper pads to it). Subclasses may put a
    module between fc7 and the score layer through :meth:`make_context` (ParseNet).

    Attributes:
        skip_stages: encoder stage whose pooled output each skip branch scores, coarse first
            (pool4, then pool3).
        skip_scores: the 1x1 score layers of those branches, in the same order.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: FCNParams) -> None:
        super().__init__()
        strides = p.pool_strides(spatial_dims)
        n = len(p.features)
        self.encoder = VGGEncoder(spatial_dims, in_channels, p)
        self.fc = fc_layers(spatial_dims, p.features[-1], p, p.fc_kernel_size)
        self.context, score_channels = self.make_context(spatial_dims, p)
        self.score = conv1x1(spatial_dims, score_channels, out_channels)
        self.skip_stages = [n - 1 - k for k in range(1, FCNVariant(p.variant).skips + 1)]
        self.skip_scores = nn.ModuleList(
            [conv1x1(spatial_dims, p.features[i], out_channels) for i in self.skip_stages]
        )
        self.skip_ups = nn.ModuleList(
            [Upsample(spatial_dims, out_channels, strides[i + 1], p.upsample) for i in self.skip_stages]
        )
        finest = self.skip_stages[-1] if self.skip_stages else n - 1
        self.final_up = Upsample(
            spatial_dims, out_channels, prod_per_axis(strides[: finest + 1], spatial_dims), p.upsample
        )

    def make_context(self, spatial_dims: int, p: FCNParams) -> tuple[nn.Module, int]:
        """The module between fc7 and the score layer and its output channels (FCN: none)."""
        return nn.Identity(), p.fc_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = self.score(self.context(self.fc(feats[-1])))
        for stage, score, up in zip(self.skip_stages, self.skip_scores, self.skip_ups):
            skip = feats[stage]
            y = up(y, skip.shape[2:]) + score(skip)
        return self.final_up(y, x.shape[2:])


def build_fcn(spatial_dims: int, in_channels: int, out_channels: int, params: FCNParams) -> nn.Module:
    """Registry builder of ``fcn``: ``[B, in_channels, *spatial] -> [B, out_channels, *spatial]``."""
    return FCN(spatial_dims, in_channels, out_channels, params)
