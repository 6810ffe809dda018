"""ENet: Paszke, Chaurasia, Kim, Culurciello, "ENet: A Deep Neural Network Architecture for Real-Time
Semantic Segmentation", arXiv:1606.02147, 2016; registered for 2D.

Layout (paper values; widths and depths are parameters):

- initial block: a 3x3 stride-2 conv with ``features[0] - in_channels`` filters concatenated with a
  2x2 max pool of the input, then norm and PReLU (``[B, 16, H/2, W/2]``);
- stage 1: a downsampling bottleneck to ``features[1]`` then ``stage1_blocks`` regular bottlenecks
  (``[B, 64, H/4, W/4]``, spatial dropout 0.01);
- stages 2 and 3 (``context_repeats``): stage 2 starts with a downsampling bottleneck to
  ``features[2]``; each stage then alternates regular and asymmetric (5x1 then 1x5) bottlenecks
  with dilated ones, one per entry of ``context_dilations``: regular, dilated 2, asymmetric,
  dilated 4, regular, dilated 8, asymmetric, dilated 16 (``[B, 128, H/8, W/8]``, dropout 0.1);
- stages 4 and 5: an upsampling bottleneck (max-unpooling with the indices of the matching
  downsampling, plus a transposed conv branch) to ``features[1]`` then ``features[0]``, followed by
  ``decoder_blocks`` regular bottlenecks;
- a 2x2 stride-2 transposed conv to the classes (``[B, out_channels, H, W]``).

A bottleneck is a 1x1 projection to ``channels / projection_ratio`` (a 2x2 stride-2 conv when
downsampling), the main conv, a 1x1 expansion and spatial dropout, added to the shortcut (max
pooling with zero-padded channels when downsampling) and passed through a PReLU.

Max-unpooling: ``nn.MaxUnpool2d`` does not export to ONNX (opset 17), so :func:`max_unpool`
scatters the pooled values back to the positions of their maxima (``scatter`` exports as
``ScatterElements``); it is the same operation, not an approximation. The code is generic in the
number of spatial axes (the asymmetric conv is one 1D kernel per axis in turn), but only 2D is
registered: in 3D the paper's design is untested.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from medseg.errors import ConfigError
from medseg.models._blocks import ConvNormAct, conv_transpose_type, conv_type, make_act, make_norm
from medseg.models._params import Act, ModelParams, Norm

_PRELU = Act.PRELU


class ENetParams(ModelParams):
    """Parameters of ``enet`` (paper values in brackets)."""

    features: tuple[int, int, int] = Field(
        (16, 64, 128),
        description="channels after the initial block, stage 1 and stages 2-3; non-decreasing, the first "
        "above in_channels [16, 64, 128]",
    )
    stage1_blocks: int = Field(
        4, ge=0, description="regular bottlenecks of stage 1 after its downsampling [4]"
    )
    context_dilations: tuple[int, ...] = Field(
        (2, 4, 8, 16),
        description="dilation of each dilated bottleneck of stages 2-3; each is preceded by a regular "
        "(even entries) or asymmetric (odd entries) bottleneck [2, 4, 8, 16]",
    )
    context_repeats: int = Field(
        2, ge=1, description="stages at 1/8 resolution (the first starts with a downsampling) [2]"
    )
    decoder_blocks: tuple[int, int] = Field(
        (2, 1), description="regular bottlenecks after the two upsampling bottlenecks [2, 1]"
    )
    asymmetric_kernel: int = Field(
        5, ge=3, description="length k of the asymmetric kx1 then 1xk convs (odd) [5]"
    )
    projection_ratio: int = Field(4, ge=1, description="channel reduction inside each bottleneck [4]")
    dropout_stage1: float = Field(0.01, ge=0, lt=1, description="spatial dropout of stage 1 [0.01]")
    dropout: float = Field(0.1, ge=0, lt=1, description="spatial dropout of the later stages [0.1]")
    norm: Norm = Field(Norm.BATCH, description="normalisation: instance or batch [batch]")

    @field_validator("features")
    @classmethod
    def _features(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if v[0] < 2 or not v[0] <= v[1] <= v[2]:
            raise ValueError(f"features must be non-decreasing and features[0] >= 2, got {list(v)}")
        return v

    @field_validator("context_dilations")
    @classmethod
    def _dilations(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in v):
            raise ValueError(f"context_dilations must be >= 1, got {list(v)}")
        return v

    @field_validator("asymmetric_kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"asymmetric_kernel must be odd, got {v}")
        return v

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return (8,) * spatial_dims


def max_unpool(x: torch.Tensor, indices: torch.Tensor, factor: int) -> torch.Tensor:
    """``nn.MaxUnpool{2,3}d`` with kernel = stride = ``factor``, exportable to ONNX.

    ``x`` and ``indices`` ``[B, C, *s]`` (``indices`` from ``max_pool(..., return_indices=True)``:
    flat positions within each channel of the ``[B, C, *(factor * s)]`` output) -> the output, zero
    except at the maxima.
    """
    dims = x.ndim - 2
    flat = x.flatten(2)
    out = torch.zeros_like(flat).repeat(1, 1, factor**dims).scatter(2, indices.flatten(2), flat)
    return out.view(*x.shape[:2], *(factor * s for s in x.shape[2:]))


class InitialBlock(nn.Module):
    """``[B, in, *s] -> [B, out, *s/2]``: a strided 3x3 conv (``out - in`` filters) next to a max pool."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: Norm) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ConfigError(
                f"enet: features[0] ({out_channels}) must exceed in_channels ({in_channels})",
                hint="give model.params.features a first width above the number of input channels",
            )
        self.conv = conv_type(spatial_dims)(in_channels, out_channels - in_channels, 3, 2, 1, bias=False)
        self.pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims](2, 2)
        self.post = nn.Sequential(make_norm(norm, spatial_dims, out_channels), make_act(_PRELU))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.cat([self.conv(x), self.pool(x)], dim=1))


class AsymmetricConv(nn.Sequential):
    """A ``k``-long 1D conv along each axis in turn (2D: ``k x 1`` then ``1 x k``), then norm and PReLU."""

    def __init__(self, spatial_dims: int, channels: int, k: int, norm: Norm) -> None:
        convs: list[nn.Module] = []
        for axis in range(spatial_dims):
            kernel = tuple(k if a == axis else 1 for a in range(spatial_dims))
            padding = tuple((k - 1) // 2 if a == axis else 0 for a in range(spatial_dims))
            convs.append(conv_type(spatial_dims)(channels, channels, kernel, padding=padding, bias=False))
        super().__init__(*convs, make_norm(norm, spatial_dims, channels), make_act(_PRELU))


class Bottleneck(nn.Module):
    """Regular, dilated or asymmetric bottleneck ``[B, c, *s] -> [B, c, *s]`` with an identity shortcut.

    Args:
        spatial_dims: 2 or 3.
        channels: input and output channels.
        kind: ``"regular"``, ``"dilated"`` or ``"asymmetric"``.
        dilation: dilation of the main 3x3 conv (``"dilated"``).
        asymmetric_kernel: length of the asymmetric convs.
        ratio: projection ratio.
        dropout: spatial dropout of the extension branch.
        norm: normalisation.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        kind: str,
        dilation: int,
        asymmetric_kernel: int,
        ratio: int,
        dropout: float,
        norm: Norm,
    ) -> None:
        super().__init__()
        inner = max(1, channels // ratio)
        if kind == "asymmetric":
            main: nn.Module = AsymmetricConv(spatial_dims, inner, asymmetric_kernel, norm)
        else:
            main = ConvNormAct(spatial_dims, inner, inner, 3, dilation=dilation, norm=norm, act=_PRELU)
        self.kind = kind
        self.ext = nn.Sequential(
            ConvNormAct(spatial_dims, channels, inner, 1, norm=norm, act=_PRELU),
            main,
            ConvNormAct(spatial_dims, inner, channels, 1, norm=norm, act=None, dropout=dropout),
        )
        self.act = make_act(_PRELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.ext(x))


class DownsamplingBottleneck(nn.Module):
    """``[B, cin, *s] -> ([B, cout, *s/2], pooling indices [B, cin, *s/2])``."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, ratio: int, dropout: float, norm: Norm
    ) -> None:
        super().__init__()
        inner = max(1, in_channels // ratio)
        self.extra = out_channels - in_channels
        self.pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims](2, 2, return_indices=True)
        self.ext = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, inner, 2, stride=2, norm=norm, act=_PRELU),
            ConvNormAct(spatial_dims, inner, inner, 3, norm=norm, act=_PRELU),
            ConvNormAct(spatial_dims, inner, out_channels, 1, norm=norm, act=None, dropout=dropout),
        )
        self.act = make_act(_PRELU)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        main, indices = self.pool(x)
        if self.extra:
            main = F.pad(main, [0, 0] * (x.ndim - 2) + [0, self.extra])  # zero channels
        return self.act(main + self.ext(x)), indices


class UpsamplingBottleneck(nn.Module):
    """``[B, cin, *s]`` and the indices of the matching downsampling ``-> [B, cout, *2s]``."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, ratio: int, dropout: float, norm: Norm
    ) -> None:
        super().__init__()
        inner = max(1, in_channels // ratio)
        self.main = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=norm, act=None)
        self.ext = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, inner, 1, norm=norm, act=_PRELU),
            conv_transpose_type(spatial_dims)(inner, inner, 3, 2, 1, output_padding=1, bias=False),
            make_norm(norm, spatial_dims, inner),
            make_act(_PRELU),
            ConvNormAct(spatial_dims, inner, out_channels, 1, norm=norm, act=None, dropout=dropout),
        )
        self.act = make_act(_PRELU)

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return self.act(max_unpool(self.main(x), indices, 2) + self.ext(x))


def _context_stage(spatial_dims: int, p: ENetParams) -> nn.Sequential:
    """One stage at 1/8 resolution: (regular | asymmetric, dilated) per entry of ``context_dilations``."""
    c, k, r, blocks = p.features[2], p.asymmetric_kernel, p.projection_ratio, []
    for i, d in enumerate(p.context_dilations):
        kind = "regular" if i % 2 == 0 else "asymmetric"
        blocks.append(Bottleneck(spatial_dims, c, kind, 1, k, r, p.dropout, p.norm))
        blocks.append(Bottleneck(spatial_dims, c, "dilated", d, k, r, p.dropout, p.norm))
    return nn.Sequential(*blocks)


class ENet(nn.Module):
    """ENet: ``[B, in_channels, *spatial] -> [B, out_channels, *spatial]`` logits (spatial a multiple of
    8). See the module docstring and :class:`ENetParams`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: ENetParams) -> None:
        super().__init__()
        f, r, n = p.features, p.projection_ratio, p.norm

        def regular(c: int, count: int, dropout: float) -> nn.Sequential:
            return nn.Sequential(
                *[
                    Bottleneck(spatial_dims, c, "regular", 1, p.asymmetric_kernel, r, dropout, n)
                    for _ in range(count)
                ]
            )

        self.initial = InitialBlock(spatial_dims, in_channels, f[0], n)
        self.down1 = DownsamplingBottleneck(spatial_dims, f[0], f[1], r, p.dropout_stage1, n)
        self.stage1 = regular(f[1], p.stage1_blocks, p.dropout_stage1)
        self.down2 = DownsamplingBottleneck(spatial_dims, f[1], f[2], r, p.dropout, n)
        self.context = nn.Sequential(*[_context_stage(spatial_dims, p) for _ in range(p.context_repeats)])
        self.up4 = UpsamplingBottleneck(spatial_dims, f[2], f[1], r, p.dropout, n)
        self.stage4 = regular(f[1], p.decoder_blocks[0], p.dropout)
        self.up5 = UpsamplingBottleneck(spatial_dims, f[1], f[0], r, p.dropout, n)
        self.stage5 = regular(f[0], p.decoder_blocks[1], p.dropout)
        self.fullconv = conv_transpose_type(spatial_dims)(f[0], out_channels, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, idx1 = self.down1(self.initial(x))
        x, idx2 = self.down2(self.stage1(x))
        x = self.stage4(self.up4(self.context(x), idx2))
        x = self.stage5(self.up5(x, idx1))
        return self.fullconv(x)


def build_enet(spatial_dims: int, in_channels: int, out_channels: int, params: ENetParams) -> nn.Module:
    """Registry builder of ``enet``."""
    return ENet(spatial_dims, in_channels, out_channels, params)
