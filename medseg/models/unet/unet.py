"""The classic U-Net (Ronneberger et al. 2015; 3D: Çiçek et al. 2016), 2D and 3D.

Each level applies ``convs_per_level`` conv-norm-act layers (or one residual
block of them); the encoder halves the size with max pooling (per-axis
strides allowed), the decoder doubles it with a transposed convolution and
concatenates the encoder features of the same level (the skip connection)
before its conv block. ``skip_connections=False`` drops every concatenation (the
decoder sees only the upsampled coarse features); a list with one flag per skip
level, top (full resolution) first, drops some of them. These are the ablations
for studying what skips contribute to boundary quality (benchmarks/architecture_study.py).
"""

from __future__ import annotations

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import conv_stack, conv_transpose_type, conv_type, max_pool_type
from medseg.models._params import (
    Act,
    ModelParams,
    Norm,
    PerAxis,
    as_tuple,
    check_axis_entries,
    check_axis_value,
    prod_per_axis,
    spatial_dims_of,
)


class UNetParams(ModelParams):
    """Parameters of ``unet``."""

    features: tuple[int, ...] = Field(
        (16, 32, 64, 128, 256),
        description="channels per level, top to bottom; the number of entries is the number of levels",
    )
    strides: tuple[PerAxis, ...] | None = Field(
        None,
        description="pooling stride between consecutive levels (len(features)-1 entries, each an int or "
        "one per axis); default 2 everywhere",
    )
    kernel_size: PerAxis = Field(3, description="convolution kernel size (odd; int or one per axis)")
    convs_per_level: int = Field(2, ge=1, description="conv-norm-act layers per level")
    norm: Norm = Field(Norm.INSTANCE, description="normalisation: instance or batch")
    act: Act = Field(Act.LEAKYRELU, description="activation: relu, leakyrelu or prelu")
    residual: bool = Field(False, description="make each level's convs a residual unit")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each activation")
    skip_connections: bool | tuple[bool, ...] = Field(
        True,
        description="concatenate encoder features into the decoder: true, false (ablation without "
        "skips) or one flag per skip level, top (full resolution) first (len(features) - 1 entries)",
    )

    @field_validator("features")
    @classmethod
    def _features(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) < 2 or any(c < 1 for c in v):
            raise ValueError("features needs at least 2 positive channel counts (one per level)")
        return v

    @field_validator("kernel_size")
    @classmethod
    def _kernel(cls, v: PerAxis, info: ValidationInfo) -> PerAxis:
        check_axis_value(v, spatial_dims_of(info), "kernel_size")
        if any(k % 2 == 0 for k in ((v,) if isinstance(v, int) else v)):
            raise ValueError(f"kernel_size must be odd, got {v}")
        return v

    @field_validator("strides")
    @classmethod
    def _strides(cls, v: tuple[PerAxis, ...] | None, info: ValidationInfo) -> tuple[PerAxis, ...] | None:
        return check_axis_entries(v, info)

    @model_validator(mode="after")
    def _resolve(self) -> UNetParams:
        if self.strides is None:
            object.__setattr__(self, "strides", (2,) * (len(self.features) - 1))
        elif len(self.strides) != len(self.features) - 1:
            raise ValueError(
                f"strides has {len(self.strides)} entries but features has {len(self.features)} levels "
                f"(strides needs len(features) - 1 = {len(self.features) - 1})"
            )
        if (
            not isinstance(self.skip_connections, bool)
            and len(self.skip_connections) != len(self.features) - 1
        ):
            raise ValueError(
                f"skip_connections has {len(self.skip_connections)} flags but there are "
                f"{len(self.features) - 1} skip levels (len(features) - 1)"
            )
        return self

    def skip_levels(self) -> tuple[bool, ...]:
        """One flag per skip level, top (full resolution) first."""
        if isinstance(self.skip_connections, bool):
            return (self.skip_connections,) * (len(self.features) - 1)
        return tuple(self.skip_connections)

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return prod_per_axis(self.strides or (), spatial_dims)


class UNet(nn.Module):
    """Classic U-Net; see :class:`UNetParams` for the parameters."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: UNetParams) -> None:
        super().__init__()
        f = p.features
        strides = [as_tuple(s, spatial_dims) for s in p.strides or ()]
        block = dict(
            kernel_size=p.kernel_size, norm=p.norm, act=p.act, residual=p.residual, dropout=p.dropout
        )
        levels = p.skip_levels()
        # decoder order is bottom-up: the first decoder block joins the deepest skip
        self.skips_used = tuple(reversed(levels))
        self.encoder = nn.ModuleList(
            [conv_stack(spatial_dims, in_channels, f[0], p.convs_per_level, **block)]
        )
        self.pools = nn.ModuleList()
        for i in range(1, len(f)):
            self.pools.append(max_pool_type(spatial_dims)(strides[i - 1], strides[i - 1]))
            self.encoder.append(conv_stack(spatial_dims, f[i - 1], f[i], p.convs_per_level, **block))
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(len(f) - 2, -1, -1):
            self.ups.append(conv_transpose_type(spatial_dims)(f[i + 1], f[i], strides[i], strides[i]))
            dec_in = 2 * f[i] if levels[i] else f[i]
            self.decoder.append(conv_stack(spatial_dims, dec_in, f[i], p.convs_per_level, **block))
        self.head = conv_type(spatial_dims)(f[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.encoder[0](x)
        for pool, enc in zip(self.pools, self.encoder[1:]):
            skips.append(x)
            x = enc(pool(x))
        for up, dec, skip, used in zip(self.ups, self.decoder, reversed(skips), self.skips_used):
            x = up(x)
            x = dec(torch.cat([skip, x], dim=1) if used else x)
        return self.head(x)


def build_unet(spatial_dims: int, in_channels: int, out_channels: int, params: UNetParams) -> nn.Module:
    """Registry builder of ``unet``."""
    return UNet(spatial_dims, in_channels, out_channels, params)
