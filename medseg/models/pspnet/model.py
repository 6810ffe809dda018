"""PSPNet: Zhao, Shi, Qi, Wang, Jia, "Pyramid Scene Parsing Network", CVPR 2017; 2D and 3D.

Dilated residual encoder (the DeepLab one, :mod:`medseg.models.deeplab.encoder`)
-> pyramid pooling module: for each bin count ``b`` the features are
average-pooled to ``b`` cells per axis, projected by a 1x1 conv, linearly
upsampled back and concatenated with the features -> 3x3 conv-norm-act,
dropout -> 1x1 classifier -> linear upsampling to the input size. With
``aux_head`` a second classifier on the stage before the last is returned in
training mode (the paper's auxiliary loss; medseg's deep-supervision contract).

Differences from the paper: the pooled branches have no normalisation (a
1-cell map has no instance statistics and the batch statistics of one sample
are degenerate), and the adaptive pooling is computed as per-axis averaging
matrices built from the (static) feature size, which equals PyTorch's adaptive
average pooling and exports to ONNX for any size (``AdaptiveAvgPool`` only
exports when the bins divide the size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import ConvNormAct, conv_type, make_act, resize_to
from medseg.models._dilated import DilatedEncoderParams
from medseg.models._params import Act, PerAxis, as_tuple, check_axis_value, spatial_dims_of


class PSPNetParams(DilatedEncoderParams):
    """Parameters of ``pspnet``: the encoder's (see :class:`DilatedEncoderParams`) and the head's."""

    bins: tuple[PerAxis, ...] = Field(
        (1, 2, 3, 6),
        description="cells per axis of each pyramid level (int or one per axis); [] removes the pyramid "
        "(ablation: the head sees only the local features) [1, 2, 3, 6]",
    )
    ppm_channels: int | None = Field(
        None, ge=1, description="channels of each pyramid branch; default features[-1] // len(bins) [512]"
    )
    head_channels: int = Field(64, ge=1, description="channels of the 3x3 conv after the concatenation [512]")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the classifier [0.1]")
    aux_head: bool = Field(
        False,
        description="auxiliary classifier on the stage before the last, returned in training mode "
        "(deep supervision; the paper weighs its loss 0.4)",
    )

    @field_validator("bins")
    @classmethod
    def _bins(cls, v: tuple[PerAxis, ...], info: ValidationInfo) -> tuple[PerAxis, ...]:
        for b in v:
            check_axis_value(b, spatial_dims_of(info), "bins entry")
        return v

    @model_validator(mode="after")
    def _aux(self, info: ValidationInfo) -> PSPNetParams:
        dims = spatial_dims_of(info) or self.dims_hint()
        if self.aux_head and self.aux_scale(dims) == (1,) * dims:
            raise ValueError("aux_head needs the stage before the last to be strided (its scale is 1)")
        return self

    def per_axis_values(self) -> list[PerAxis]:
        return [*super().per_axis_values(), *self.bins]

    def branch_channels(self) -> int:
        """Channels of each pyramid branch."""
        if self.ppm_channels is not None:
            return self.ppm_channels
        return max(1, self.features[-1] // max(1, len(self.bins)))

    def aux_scale(self, spatial_dims: int) -> tuple[int, ...]:
        """Per-axis downsampling of the auxiliary output (the second-to-last feature map's stride)."""
        return self.plans(spatial_dims)[-2].cumulative_stride

    def deep_supervision_scales(self, spatial_dims: int) -> list[tuple[int, ...]]:
        return [self.aux_scale(spatial_dims)] if self.aux_head else []


def _averaging_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``[bins, size]``: row ``i`` averages the cells ``floor(i*size/bins) .. ceil((i+1)*size/bins)``
    (the bin edges of PyTorch's adaptive average pooling)."""
    m = torch.zeros(bins, size, dtype=like.dtype, device=like.device)
    for i in range(bins):
        start, end = (i * size) // bins, math.ceil((i + 1) * size / bins)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: torch.Tensor, bins: Sequence[int]) -> torch.Tensor:
    """Adaptive average pooling of ``x`` ``[B, C, *spatial]`` to ``[B, C, *bins]``, exportable to ONNX.

    Average pooling over a box is separable, so each axis is reduced by a matrix product with its
    :func:`_averaging_matrix`; the result equals ``F.adaptive_avg_pool{2,3}d`` for any size.
    """
    for axis, b in enumerate(bins):
        dim = axis + 2
        m = _averaging_matrix(int(x.shape[dim]), int(b), x)
        last = x.ndim - 1  # positive: ONNX's Transpose takes no negative axes
        x = (x.transpose(dim, last) @ m.t()).transpose(dim, last)
    return x


class PyramidPooling(nn.Module):
    """Pyramid pooling module: ``[B, C, *s] -> [B, C + len(bins) * branch_channels, *s]``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels ``C`` of the features.
        bins: cells per axis of each level (one int per axis).
        branch_channels: output channels of each level's 1x1 conv.
        act: activation after each 1x1 conv.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        bins: Sequence[tuple[int, ...]],
        branch_channels: int,
        act: Act,
    ) -> None:
        super().__init__()
        self.bins = [tuple(b) for b in bins]
        self.branches = nn.ModuleList(
            nn.Sequential(conv_type(spatial_dims)(in_channels, branch_channels, 1), make_act(act))
            for _ in self.bins
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[2:])
        pyramid = [
            resize_to(branch(adaptive_avg_pool(x, b)), size) for b, branch in zip(self.bins, self.branches)
        ]
        return torch.cat([x, *pyramid], dim=1)


class PSPNet(nn.Module):
    """PSPNet: ``[B, in_channels, *spatial] -> [B, out_channels, *spatial]`` logits (spatial a multiple of
    ``output_stride``); in training mode with ``aux_head``, ``[logits, aux]`` with ``aux`` at the
    stage-before-last resolution. See :class:`PSPNetParams`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: PSPNetParams) -> None:
        super().__init__()
        self.encoder = p.encoder(spatial_dims, in_channels)
        bins = [as_tuple(b, spatial_dims) for b in p.bins]
        self.ppm = PyramidPooling(spatial_dims, p.features[-1], bins, p.branch_channels(), p.act)
        cat = p.features[-1] + len(bins) * p.branch_channels()
        self.head = nn.Sequential(
            ConvNormAct(spatial_dims, cat, p.head_channels, 3, norm=p.norm, act=p.act, dropout=p.dropout),
            conv_type(spatial_dims)(p.head_channels, out_channels, 1),
        )
        self.aux: nn.Module | None = None
        if p.aux_head:
            c = p.features[-2]
            self.aux = nn.Sequential(
                ConvNormAct(spatial_dims, c, c, 3, norm=p.norm, act=p.act, dropout=p.dropout),
                conv_type(spatial_dims)(c, out_channels, 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        feats = self.encoder(x)
        logits = resize_to(self.head(self.ppm(feats[-1])), tuple(x.shape[2:]))
        if self.aux is not None and self.training:
            return [logits, self.aux(feats[-2])]
        return logits


def build_pspnet(spatial_dims: int, in_channels: int, out_channels: int, params: PSPNetParams) -> nn.Module:
    """Registry builder of ``pspnet``."""
    return PSPNet(spatial_dims, in_channels, out_channels, params)
