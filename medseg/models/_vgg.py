"""The VGG-style encoder and heads shared by the classic fully convolutional families, 2D and 3D.

``fcn``, ``parsenet``, ``deeplabv1`` and ``deeplabv2`` all start from the
VGG-16 layout (Simonyan, Zisserman: "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015): stages of 3x3 convolutions, each
followed by max pooling, then the classifier's fully connected layers recast
as convolutions ("fc6": a kxk conv, "fc7": a 1x1 conv, both with dropout).
This module holds what they share: the parameter fields (:class:`VGGParams`),
the encoder (:class:`VGGEncoder`), the fc6/fc7 head (:func:`fc_layers`), and
upsampling that is either a learnable transposed convolution initialised to
bilinear interpolation (as FCN's "deconvolution" layers) or fixed linear
interpolation (:class:`Upsample`).

Every network here is trained from scratch, so the conv layers are
conv-norm-act blocks (:class:`~._blocks.ConvNormAct`): VGG without
normalisation needed ImageNet pre-training (or its staged initialisation of
deeper nets from shallower ones) to train at all; with instance or batch norm
it trains from random weights with Adam.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import ConvNormAct, conv_transpose_type, interp_mode, max_pool_type
from medseg.models._params import (
    Act,
    ModelParams,
    Norm,
    PerAxis,
    as_tuple,
    check_axis_entries,
    prod_per_axis,
)


class UpsampleMode(str, Enum):
    """How score maps are upsampled."""

    TRANSPOSED = "transposed"
    INTERPOLATE = "interpolate"


class VGGParams(ModelParams):
    """Fields shared by the VGG-based families (paper values in brackets)."""

    features: tuple[int, ...] = Field(
        (16, 32, 64, 128, 128),
        description="channels of each encoder stage; the number of entries is the number of stages "
        "(each ends with a max pooling) [VGG-16: 64, 128, 256, 512, 512]",
    )
    convs_per_stage: tuple[int, ...] | None = Field(
        None,
        description="3x3 conv-norm-act layers per stage (len(features) entries); default the VGG-16 "
        "pattern: 2, 2, then 3 [2, 2, 3, 3, 3]",
    )
    strides: tuple[PerAxis, ...] | None = Field(
        None,
        description="nominal max-pooling stride after each stage (len(features) entries, an int or one "
        "per axis; 1 = no pooling along that axis, e.g. [[2,2,1], 2, 2, 2, 2] for thick slices); "
        "default 2 each",
    )
    fc_channels: int = Field(
        128, ge=1, description="channels of the convolutional fc6 and fc7 layers [FCN: 4096, DeepLab: 1024]"
    )
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="channel dropout after fc6 and fc7 [0.5]")
    norm: Norm = Field(
        Norm.INSTANCE,
        description="normalisation after every conv (trained from scratch; the papers' VGG had none "
        "and was ImageNet-initialised): instance or batch",
    )
    act: Act = Field(Act.RELU, description="activation [relu]")

    @field_validator("features")
    @classmethod
    def _features(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(c < 1 for c in v):
            raise ValueError("features needs at least one positive channel count (one per stage)")
        return v

    @field_validator("strides")
    @classmethod
    def _strides(cls, v: tuple[PerAxis, ...] | None, info: ValidationInfo) -> tuple[PerAxis, ...] | None:
        return check_axis_entries(v, info)

    @model_validator(mode="after")
    def _resolve_stages(self) -> VGGParams:
        n = len(self.features)
        if self.convs_per_stage is None:
            object.__setattr__(self, "convs_per_stage", tuple(2 if i < 2 else 3 for i in range(n)))
        if self.strides is None:
            object.__setattr__(self, "strides", (2,) * n)
        convs = self.convs_per_stage or ()
        if len(convs) != n or any(c < 1 for c in convs):
            raise ValueError(f"convs_per_stage needs {n} entries >= 1 (one per stage), got {list(convs)}")
        if len(self.strides or ()) != n:
            raise ValueError(
                f"strides has {len(self.strides or ())} entries but features has {n} stages "
                f"(one pooling stride per stage)"
            )
        return self

    def pool_strides(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """Nominal pooling stride of each stage, one int per axis."""
        return [as_tuple(s, spatial_dims) for s in self.strides or ()]

    def total_stride(self, spatial_dims: int) -> tuple[int, ...]:
        """Per-axis product of every nominal pooling stride."""
        return prod_per_axis(self.strides or (), spatial_dims)

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return self.total_stride(spatial_dims)


def vgg_pool(nominal: Sequence[int], effective: Sequence[int]) -> nn.Module:
    """The max pooling closing a stage: ``stride x stride`` windows along axes that downsample,
    3-wide stride-1 windows (padding 1) along axes whose stride DeepLab replaces by dilation,
    nothing along axes of nominal stride 1.

    Args:
        nominal: the stage's nominal stride per axis.
        effective: its actual stride per axis (the nominal one, or 1 where replaced by dilation).
    """
    kernel, padding = [], []
    for n, e in zip(nominal, effective):
        kernel.append(e if e > 1 else (3 if n > 1 else 1))
        padding.append(1 if e == 1 and n > 1 else 0)
    if all(k == 1 for k in kernel):
        return nn.Identity()
    return max_pool_type(len(nominal))(tuple(kernel), tuple(effective), tuple(padding))


class VGGEncoder(nn.Module):
    """VGG stages of 3x3 conv-norm-act layers, each stage followed by its max pooling.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        p: the stage widths, conv counts, nominal strides, norm and activation.
        effective_strides: actual pooling stride of each stage per axis (default: the nominal
            ones); DeepLab sets some to 1 and dilates the following convolutions instead.
        dilations: dilation of each stage's convolutions per axis (default 1).

    ``forward(x[B, C_in, *spatial])`` returns the pooled output of every stage,
    ``[B, features[i], *spatial / prod(effective_strides[: i + 1])]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        p: VGGParams,
        effective_strides: Sequence[tuple[int, ...]] | None = None,
        dilations: Sequence[tuple[int, ...]] | None = None,
    ) -> None:
        super().__init__()
        nominal = p.pool_strides(spatial_dims)
        effective = list(effective_strides) if effective_strides is not None else nominal
        dilations = list(dilations) if dilations is not None else [(1,) * spatial_dims] * len(nominal)
        self.stages = nn.ModuleList()
        self.pools = nn.ModuleList()
        channels = in_channels
        for width, n_convs, dil, nom, eff in zip(
            p.features, p.convs_per_stage or (), dilations, nominal, effective
        ):
            convs = [
                ConvNormAct(
                    spatial_dims,
                    channels if i == 0 else width,
                    width,
                    3,
                    dilation=dil,
                    norm=p.norm,
                    act=p.act,
                )
                for i in range(n_convs)
            ]
            self.stages.append(nn.Sequential(*convs))
            self.pools.append(vgg_pool(nom, eff))
            channels = width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage, pool in zip(self.stages, self.pools):
            x = pool(stage(x))
            feats.append(x)
        return feats


def fc_layers(
    spatial_dims: int,
    in_channels: int,
    p: VGGParams,
    kernel_size: PerAxis = 3,
    dilation: PerAxis = 1,
) -> nn.Sequential:
    """VGG's fully connected fc6 and fc7 as convolutions: a ``kernel_size`` conv (dilated for
    DeepLab) and a 1x1 conv, each conv-norm-act with channel dropout; ``[B, C, *s] -> [B, fc, *s]``."""
    return nn.Sequential(
        ConvNormAct(
            spatial_dims,
            in_channels,
            p.fc_channels,
            kernel_size,
            dilation=dilation,
            norm=p.norm,
            act=p.act,
            dropout=p.dropout,
        ),
        ConvNormAct(spatial_dims, p.fc_channels, p.fc_channels, 1, norm=p.norm, act=p.act, dropout=p.dropout),
    )


def bilinear_kernel(factor: Sequence[int]) -> torch.Tensor:
    """The separable (bi/tri)linear interpolation kernel of a transposed convolution upsampling by
    ``factor`` per axis, of size ``2 * f - f % 2`` per axis (FCN's ``bilinear`` filler)."""
    kernel = torch.ones(())
    for f in factor:
        size = 2 * f - f % 2
        centre = f - 1 if size % 2 == 1 else f - 0.5
        taps = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / f
        kernel = kernel[..., None] * taps
    return kernel.float()


class Upsample(nn.Module):
    """Upsample ``[B, C, *s]`` by an integer ``factor`` per axis to ``[B, C, *(s * factor)]``.

    ``transposed``: a learnable transposed convolution (kernel ``2f - f % 2``, stride ``f``,
    padding ``f // 2`` per axis, no bias), initialised to linear interpolation (FCN). It is
    depthwise, one kernel per channel (class): FCN's layers mixed the classes but started
    diagonal, and a full ``C x C`` kernel of 64^3 taps (x32 in 3D) would cost ``C^2`` times as
    many parameters. ``interpolate``: fixed linear interpolation to the target size.
    """

    def __init__(self, spatial_dims: int, channels: int, factor: Sequence[int], mode: UpsampleMode) -> None:
        super().__init__()
        self.factor = tuple(int(f) for f in factor)
        self.mode = UpsampleMode(mode)
        self.conv: nn.Module | None = None
        if self.mode is UpsampleMode.TRANSPOSED and any(f > 1 for f in self.factor):
            kernel = bilinear_kernel(self.factor)
            conv = conv_transpose_type(spatial_dims)(
                channels,
                channels,
                tuple(kernel.shape),
                stride=self.factor,
                padding=tuple(f // 2 for f in self.factor),
                groups=channels,
                bias=False,
            )
            with torch.no_grad():
                conv.weight.copy_(kernel.expand_as(conv.weight))
            self.conv = conv

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``x`` upsampled to spatial ``size`` (which is ``x``'s size times the factor)."""
        if all(f == 1 for f in self.factor):
            return x
        if self.conv is not None:
            return self.conv(x)
        return F.interpolate(x, size=tuple(size), mode=interp_mode(x.ndim - 2), align_corners=False)


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the spatial axes of ``[B, C, *spatial]``, keeping them (``[B, C, 1, ...]``); taken
    one axis at a time, which keeps onnxruntime's float32 sums short (accurate ONNX parity)."""
    for dim in range(x.ndim - 1, 1, -1):
        x = x.mean(dim=dim, keepdim=True)
    return x
