"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation") and
DeepLabV3+ (Chen et al., ECCV 2018, "Encoder-Decoder with Atrous Separable Convolution"), 2D and 3D.

V3: atrous residual encoder -> ASPP -> 3x3 conv -> 1x1 classifier -> linear
upsampling to the input size. V3+: the ASPP output is upsampled to the
low-level features (stride 4 by default), concatenated with their 1x1
projection, refined by two 3x3 convs, classified and upsampled.

Plain (not depthwise-separable) convolutions and basic residual blocks; sizes
are scaled down for CPU training (paper values in the parameter docs).
"""

from __future__ import annotations

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import ConvNormAct, conv_type, resize_to
from medseg.models._dilated import DilatedEncoderParams
from medseg.models._params import PerAxis, as_tuple, check_axis_entries
from medseg.models.deeplab.aspp import ASPP


class DeepLabV3Params(DilatedEncoderParams):
    """Parameters of ``deeplabv3``: the dilated encoder's and the ASPP's (paper values in brackets)."""

    aspp_rates: tuple[PerAxis, ...] = Field(
        (2, 4, 6),
        description="dilation of each ASPP 3x3 branch (int or one per axis) [6, 12, 18 at output stride 16 "
        "on 33x33 maps; these defaults keep the same rate/map-size ratio for ~96-voxel patches at stride 8]",
    )
    aspp_channels: int = Field(64, ge=1, description="channels of each ASPP branch and of the head [256]")
    image_pooling: bool = Field(True, description="ASPP image-level (global average) branch")
    aspp_dropout: float = Field(0.1, ge=0, lt=1, description="dropout after the ASPP projection")

    @field_validator("aspp_rates")
    @classmethod
    def _aspp_rates(cls, v: tuple[PerAxis, ...], info: ValidationInfo) -> tuple[PerAxis, ...]:
        return check_axis_entries(v, info)

    def per_axis_values(self) -> list[PerAxis]:
        return [*super().per_axis_values(), *self.aspp_rates]

    def rates(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """ASPP dilations per branch and axis (all 1 when ``atrous`` is False)."""
        if not self.atrous:
            return [(1,) * spatial_dims for _ in self.aspp_rates]
        return [as_tuple(r, spatial_dims) for r in self.aspp_rates]


class DeepLabV3PlusParams(DeepLabV3Params):
    """Parameters of ``deeplabv3plus``: those of ``deeplabv3`` plus the decoder's."""

    low_level_stage: int = Field(
        1, ge=0, description="encoder stage whose output is the decoder's low-level input (0 = stem; "
        "stage 1 is at stride 4 with the default strides)",
    )  # fmt: skip
    low_level_channels: int = Field(24, ge=1, description="1x1 projection of the low-level features [48]")
    decoder_channels: int = Field(64, ge=1, description="channels of the decoder's two 3x3 convs [256]")

    @model_validator(mode="after")
    def _low_level(self) -> DeepLabV3PlusParams:
        if self.low_level_stage >= len(self.features) - 1:
            raise ValueError(
                f"low_level_stage must be < {len(self.features) - 1} (a stage before the last), "
                f"got {self.low_level_stage}"
            )
        return self


def _aspp(spatial_dims: int, p: DeepLabV3Params) -> ASPP:
    return ASPP(
        spatial_dims,
        p.features[-1],
        p.aspp_channels,
        p.rates(spatial_dims),
        p.image_pooling,
        p.norm,
        p.act,
        p.aspp_dropout,
    )


class DeepLabV3(nn.Module):
    """DeepLabV3; see :class:`DeepLabV3Params`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: DeepLabV3Params) -> None:
        super().__init__()
        self.encoder = p.encoder(spatial_dims, in_channels)
        self.aspp = _aspp(spatial_dims, p)
        self.head = nn.Sequential(
            ConvNormAct(spatial_dims, p.aspp_channels, p.aspp_channels, 3, norm=p.norm, act=p.act),
            conv_type(spatial_dims)(p.aspp_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        return resize_to(self.head(self.aspp(feats[-1])), tuple(x.shape[2:]))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+; see :class:`DeepLabV3PlusParams`."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, p: DeepLabV3PlusParams
    ) -> None:
        super().__init__()
        self.low_level_stage = p.low_level_stage
        self.encoder = p.encoder(spatial_dims, in_channels)
        self.aspp = _aspp(spatial_dims, p)
        self.low_level = ConvNormAct(
            spatial_dims, p.features[p.low_level_stage], p.low_level_channels, 1, norm=p.norm, act=p.act
        )
        self.decoder = nn.Sequential(
            ConvNormAct(
                spatial_dims,
                p.aspp_channels + p.low_level_channels,
                p.decoder_channels,
                3,
                norm=p.norm,
                act=p.act,
            ),
            ConvNormAct(spatial_dims, p.decoder_channels, p.decoder_channels, 3, norm=p.norm, act=p.act),
            conv_type(spatial_dims)(p.decoder_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        low = self.low_level(feats[self.low_level_stage])
        high = resize_to(self.aspp(feats[-1]), tuple(low.shape[2:]))
        return resize_to(self.decoder(torch.cat([high, low], dim=1)), tuple(x.shape[2:]))


def build_deeplabv3(
    spatial_dims: int, in_channels: int, out_channels: int, params: DeepLabV3Params
) -> nn.Module:
    """Registry builder of ``deeplabv3``."""
    return DeepLabV3(spatial_dims, in_channels, out_channels, params)


def build_deeplabv3plus(
    spatial_dims: int, in_channels: int, out_channels: int, params: DeepLabV3PlusParams
) -> nn.Module:
    """Registry builder of ``deeplabv3plus``."""
    return DeepLabV3Plus(spatial_dims, in_channels, out_channels, params)
