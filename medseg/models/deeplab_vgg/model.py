"""DeepLab v1 and v2 on an atrous VGG-style encoder, 2D and 3D, trained from scratch.

- ``deeplabv1``: Chen, Papandreou, Kokkinos, Murphy, Yuille: "Semantic Image Segmentation with
  Deep Convolutional Nets and Fully Connected CRFs", ICLR 2015 (the DeepLab-LargeFOV head).
- ``deeplabv2``: Chen, Papandreou, Kokkinos, Murphy, Yuille: "DeepLab: Semantic Image
  Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
  IEEE TPAMI 40(4), 2018 (ASPP-L on VGG-16).

Encoder: VGG stages (:class:`~medseg.models._vgg.VGGEncoder`). Along each axis, once the
cumulative pooling stride reaches ``output_stride`` (8 by default), the remaining pools keep
the resolution (3-wide windows, stride 1, as in the papers' pool4/pool5) and the convolutions
after them are dilated by the stride skipped so far (conv5 at rate 2 in the papers); the plan is
:func:`medseg.models.deeplab.encoder.plan_stages`, per axis.

Heads on the output-stride map: v1 (LargeFOV) is a dilated 3x3 fc6 (rate ``fc_rate``), a 1x1 fc7
and a 1x1 classifier; v2 (ASPP) sums the logits of one such branch per entry of ``rates`` (each
rate per axis, for anisotropic voxels). The logits are upsampled to the input size by linear
interpolation. The fully connected CRF post-processing of the papers is not part of the network.

``atrous=False`` (the dilation ablation) uses plain strides instead: every pool downsamples
with its nominal stride (output stride = the product of the strides, like FCN-32s without
skips) and every dilation, in the encoder and the heads, is 1. (``deeplabv3``'s ``atrous=False``
differs: it keeps the output stride and only drops the dilations.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import conv_type, interp_mode
from medseg.models._params import PerAxis, as_tuple, check_axis_value, spatial_dims_of
from medseg.models._vgg import VGGEncoder, VGGParams, fc_layers
from medseg.models.deeplab.encoder import StagePlan, plan_stages


class DeepLabVGGParams(VGGParams):
    """Parameters shared by ``deeplabv1`` and ``deeplabv2`` (paper values in brackets)."""

    output_stride: PerAxis = Field(
        8,
        description="encoder output stride (int or one per axis), reached by a prefix of the strides; "
        "later pools keep the size and the convs after them are dilated instead [8]",
    )
    atrous: bool = Field(
        True,
        description="atrous encoder and head; False: plain strides (output stride = product of the "
        "strides) and every dilation 1 (ablation)",
    )

    @field_validator("output_stride")
    @classmethod
    def _os(cls, v: PerAxis, info: ValidationInfo) -> PerAxis:
        return check_axis_value(v, spatial_dims_of(info), "output_stride")

    @model_validator(mode="after")
    def _check_plan(self, info: ValidationInfo) -> DeepLabVGGParams:
        dims = spatial_dims_of(info) or self._dims_hint()
        try:
            self.plans(dims)
        except ValueError as exc:
            raise ValueError(f"output_stride: {exc}") from None
        return self

    def _per_axis_values(self) -> list[PerAxis]:
        return [self.output_stride, *(self.strides or ())]

    def _dims_hint(self) -> int:
        """A spatial_dims consistent with the per-axis values (for validation without context)."""
        return next((len(v) for v in self._per_axis_values() if not isinstance(v, int)), 3)

    def plans(self, spatial_dims: int) -> list[StagePlan]:
        """Effective stride and dilation after each stage's pooling (atrous plan)."""
        return plan_stages(self.pool_strides(spatial_dims), as_tuple(self.output_stride, spatial_dims))

    def encoder_layout(self, spatial_dims: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        """(effective pooling stride of each stage, dilation of each stage's convs), per axis."""
        n, one = len(self.features), (1,) * spatial_dims
        if not self.atrous:
            return self.pool_strides(spatial_dims), [one] * n
        plans = self.plans(spatial_dims)
        return [pl.stride for pl in plans], [one] + [pl.dilation for pl in plans[:-1]]

    def rate(self, value: PerAxis, spatial_dims: int) -> tuple[int, ...]:
        """A head dilation per axis (1 everywhere without ``atrous``)."""
        return as_tuple(value, spatial_dims) if self.atrous else (1,) * spatial_dims

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        if self.atrous:
            return as_tuple(self.output_stride, spatial_dims)
        return self.total_stride(spatial_dims)


class DeepLabV1Params(DeepLabVGGParams):
    """Parameters of ``deeplabv1``."""

    fc_rate: PerAxis = Field(
        4,
        description="dilation of the 3x3 fc6 (int or one per axis) [LargeFOV: 12 on ~40-pixel maps; 4 "
        "keeps that rate/map-size ratio for ~96-voxel patches]",
    )

    @field_validator("fc_rate")
    @classmethod
    def _rate(cls, v: PerAxis, info: ValidationInfo) -> PerAxis:
        return check_axis_value(v, spatial_dims_of(info), "fc_rate")

    def _per_axis_values(self) -> list[PerAxis]:
        return [*super()._per_axis_values(), self.fc_rate]


class DeepLabV2Params(DeepLabVGGParams):
    """Parameters of ``deeplabv2``."""

    rates: tuple[PerAxis, ...] = Field(
        (2, 4, 6, 8),
        description="dilation of each ASPP branch's 3x3 fc6, each an int or one per axis (e.g. "
        "[[6,6,1],[12,12,2]] for thick slices) [ASPP-L: 6, 12, 18, 24 on ~40-pixel maps]",
    )

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: tuple[PerAxis, ...], info: ValidationInfo) -> tuple[PerAxis, ...]:
        if not v:
            raise ValueError("rates needs at least one entry (one ASPP branch per rate)")
        for r in v:
            check_axis_value(r, spatial_dims_of(info), "rates entry")
        return v

    def _per_axis_values(self) -> list[PerAxis]:
        return [*super()._per_axis_values(), *self.rates]


def _branch(spatial_dims: int, out_channels: int, p: DeepLabVGGParams, rate: tuple[int, ...]) -> nn.Module:
    """fc6 (3x3, dilated by ``rate``), fc7 (1x1) and a 1x1 classifier: ``[B, C, *s] -> [B, K, *s]``."""
    return nn.Sequential(
        fc_layers(spatial_dims, p.features[-1], p, 3, dilation=rate),
        conv_type(spatial_dims)(p.fc_channels, out_channels, 1),
    )


class DeepLabVGG(nn.Module):
    """DeepLab v1/v2: atrous VGG encoder, the sum of the heads' logits, linear upsampling.

    ``forward(x[B, C_in, *spatial])`` gives logits ``[B, out_channels, *spatial]`` for a spatial
    size that is a multiple of ``p.divisor`` (the wrapper pads to it).

    Args:
        spatial_dims, in_channels, out_channels: as for every builder.
        p: the parameters.
        rates: the fc6 dilation of each head branch, per axis (one branch: v1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        p: DeepLabVGGParams,
        rates: list[tuple[int, ...]],
    ) -> None:
        super().__init__()
        strides, dilations = p.encoder_layout(spatial_dims)
        self.encoder = VGGEncoder(spatial_dims, in_channels, p, strides, dilations)
        self.branches = nn.ModuleList([_branch(spatial_dims, out_channels, p, r) for r in rates])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)[-1]
        logits = self.branches[0](feats)
        for branch in self.branches[1:]:
            logits = logits + branch(feats)
        if tuple(logits.shape[2:]) == tuple(x.shape[2:]):
            return logits
        return F.interpolate(logits, size=x.shape[2:], mode=interp_mode(x.ndim - 2), align_corners=False)


def build_deeplabv1(
    spatial_dims: int, in_channels: int, out_channels: int, params: DeepLabV1Params
) -> nn.Module:
    """Registry builder of ``deeplabv1`` (LargeFOV head):
    ``[B, in_channels, *spatial] -> [B, out_channels, *spatial]``."""
    return DeepLabVGG(
        spatial_dims, in_channels, out_channels, params, [params.rate(params.fc_rate, spatial_dims)]
    )


def build_deeplabv2(
    spatial_dims: int, in_channels: int, out_channels: int, params: DeepLabV2Params
) -> nn.Module:
    """Registry builder of ``deeplabv2`` (ASPP: one summed branch per rate):
    ``[B, in_channels, *spatial] -> [B, out_channels, *spatial]``."""
    rates = [params.rate(r, spatial_dims) for r in params.rates]
    return DeepLabVGG(spatial_dims, in_channels, out_channels, params, rates)
