"""Atrous Spatial Pyramid Pooling (Chen et al., DeepLabV3, 2017), 2D and 3D, per-axis rates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.models._blocks import ConvNormAct, conv_type, make_act
from medseg.models._params import Act, Norm


class ImagePooling(nn.Module):
    """Image-level features: global average, 1x1 conv, activation, broadcast back to the map size.

    No normalisation: a 1-voxel map has no spatial statistics (instance norm) and
    batch statistics of one sample are degenerate.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, act: Act) -> None:
        super().__init__()
        self.conv = conv_type(spatial_dims)(in_channels, out_channels, 1)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        pooled = self.act(self.conv(x.mean(dim=dims, keepdim=True)))
        return pooled.expand(-1, -1, *x.shape[2:])


class ASPP(nn.Module):
    """A 1x1 branch, one dilated 3x3 branch per rate, optional image pooling; concatenated and
    projected with a 1x1 conv-norm-act (then dropout).

    Args:
        spatial_dims: 2 or 3.
        in_channels: encoder channels.
        out_channels: channels of every branch and of the output.
        rates: dilation of each 3x3 branch, each one int per axis.
        image_pooling: add the image-level branch.
        norm, act: normalisation and activation.
        dropout: dropout after the projection.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        rates: Sequence[tuple[int, ...]],
        image_pooling: bool,
        norm: Norm,
        act: Act,
        dropout: float,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [
            ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=norm, act=act)
        ]
        for rate in rates:
            branches.append(
                ConvNormAct(spatial_dims, in_channels, out_channels, 3, dilation=rate, norm=norm, act=act)
            )
        if image_pooling:
            branches.append(ImagePooling(spatial_dims, in_channels, out_channels, act))
        self.branches = nn.ModuleList(branches)
        self.project = ConvNormAct(
            spatial_dims, out_channels * len(branches), out_channels, 1, norm=norm, act=act, dropout=dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))
