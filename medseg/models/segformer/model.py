"""SegFormer (Xie, Wang, Yu, Anandkumar, Alvarez, Luo: "SegFormer: Simple and Efficient Design for
Semantic Segmentation with Transformers", NeurIPS 2021), 2D and 3D, trained from scratch.

Encoder: the hierarchical Mix Transformer (:mod:`.mit`), four stages by default. Decoder
(all-MLP): each stage's features ``[B, C_i, *grid_i]`` are mapped to a common width ``D`` by a
linear layer (a 1x1 convolution), upsampled (bi/trilinearly) to the first stage's grid (1/4 of
the input with the paper's strides), concatenated (``4D`` channels), fused by a 1x1
convolution-norm-ReLU, classified by a 1x1 convolution and upsampled to the input size: logits
``[B, out_channels, *spatial]``.

``size`` picks the paper's MiT-B0 or MiT-B1 layout, or ``custom`` for explicit widths, depths,
heads and reduction ratios. Patch-merging strides may differ per axis (anisotropic volumes).
"""

from __future__ import annotations

import math
from enum import Enum

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import ConvNormAct, conv_type, interp_mode
from medseg.models._params import (
    Act,
    ModelParams,
    Norm,
    PerAxis,
    as_tuple,
    check_axis_entries,
)
from medseg.models.segformer.mit import MixTransformer


class SegFormerSize(str, Enum):
    """Encoder layout: a preset of the paper or explicit values."""

    B0 = "b0"
    B1 = "b1"
    CUSTOM = "custom"


def _mit(*widths: int) -> dict[str, tuple[int, ...]]:
    """A MiT layout of the paper with these stage widths (B0 to B5 share heads and reduction ratios)."""
    return {"widths": widths, "depths": (2, 2, 2, 2), "heads": (1, 2, 5, 8), "sr_ratios": (8, 4, 2, 1)}


#: The paper's MiT layouts (Table 6 of the supplement): widths, depths, heads, reduction ratios.
PRESETS: dict[SegFormerSize, dict[str, tuple[int, ...]]] = {
    SegFormerSize.B0: _mit(32, 64, 160, 256),
    SegFormerSize.B1: _mit(64, 128, 320, 512),
}
_LAYOUT = ("widths", "depths", "heads", "sr_ratios")


class SegFormerParams(ModelParams):
    """Parameters of ``segformer`` (paper values in brackets)."""

    size: SegFormerSize = Field(
        SegFormerSize.B0,
        description="encoder layout: 'b0' (widths 32,64,160,256; heads 1,2,5,8), 'b1' (64,128,320,512; "
        "heads 1,2,5,8), both depths 2,2,2,2 and sr_ratios 8,4,2,1; or 'custom' (give widths, depths, "
        "heads and sr_ratios)",
    )
    widths: tuple[int, ...] | None = Field(
        None, description="channels of each stage (size 'custom'; a preset fills it in)"
    )
    depths: tuple[int, ...] | None = Field(
        None, description="transformer blocks per stage (size 'custom'; a preset fills it in)"
    )
    heads: tuple[int, ...] | None = Field(
        None, description="attention heads per stage, each dividing the stage's width (size 'custom')"
    )
    sr_ratios: tuple[PerAxis, ...] | None = Field(
        None,
        description="spatial-reduction ratio R of the keys/values per stage, an int or one per axis "
        "(key length N / R^d; size 'custom')",
    )
    strides: tuple[PerAxis, ...] | None = Field(
        None,
        description="overlapped patch-merging stride per stage (kernel 2*stride-1, at least 3), an int or "
        "one per axis; default 4, 2, 2, ... [4, 2, 2, 2]",
    )
    decoder_dim: int = Field(256, ge=1, description="common width D of the all-MLP decoder [256 for b0/b1]")
    mlp_ratio: float = Field(4.0, gt=0, description="Mix-FFN hidden width / stage width [4]")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after attention, in Mix-FFN [0]")
    attention_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on attention weights [0]")
    decoder_dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the classifier [0.1]")
    norm: Norm = Field(Norm.INSTANCE, description="normalisation of the decoder's fusion layer [batch]")

    @field_validator("sr_ratios", "strides")
    @classmethod
    def _per_axis(cls, v: tuple[PerAxis, ...] | None, info: ValidationInfo) -> tuple[PerAxis, ...] | None:
        return check_axis_entries(v, info)

    @model_validator(mode="after")
    def _resolve(self) -> SegFormerParams:
        preset = PRESETS.get(self.size, {})
        for name in _LAYOUT:
            value = getattr(self, name)
            if preset and value is not None and list(value) != list(preset[name]):
                raise ValueError(
                    f"{name} {list(value)} differs from size '{self.size.value}' ({list(preset[name])}); "
                    f"use size 'custom' to set it"
                )
            if value is None:
                if not preset:
                    raise ValueError(f"size 'custom' needs {name}")
                object.__setattr__(self, name, preset[name])
        n = len(self.widths or ())
        if n < 1:
            raise ValueError("widths needs at least one stage")
        for name in ("depths", "heads", "sr_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries but widths has {n} stages")
        if self.strides is None:
            object.__setattr__(self, "strides", (4,) + (2,) * (n - 1))
        elif len(self.strides) != n:
            raise ValueError(f"strides has {len(self.strides)} entries but widths has {n} stages")
        for w, d, h in zip(self.widths or (), self.depths or (), self.heads or ()):
            if w < 1 or d < 1 or h < 1 or w % h:
                raise ValueError(
                    f"each stage needs a positive width divisible by its positive head count and depth >= 1 "
                    f"(got width {w}, heads {h}, depth {d})"
                )
        return self

    def stage_strides(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """Cumulative per-axis stride of each stage's feature map."""
        out, total = [], (1,) * spatial_dims
        for s in self.strides or ():
            total = tuple(a * b for a, b in zip(total, as_tuple(s, spatial_dims)))
            out.append(total)
        return out

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        """Every stage's grid must be a multiple of its reduction ratio (and at least one token)."""
        divisor = [1] * spatial_dims
        for stride, sr in zip(self.stage_strides(spatial_dims), self.sr_ratios or ()):
            for a, (c, r) in enumerate(zip(stride, as_tuple(sr, spatial_dims))):
                divisor[a] = math.lcm(divisor[a], c * r)
        return tuple(divisor)


class AllMLPDecoder(nn.Module):
    """SegFormer's decoder: per-stage linear to ``dim``, upsample to the first stage's grid,
    concatenate (coarsest first, as in the paper), fuse (1x1 conv-norm-ReLU), dropout, classify
    (1x1 conv). ``[B, C_i, *grid_i]`` per stage -> logits ``[B, out_channels, *grid_0]``."""

    def __init__(
        self, spatial_dims: int, widths: tuple[int, ...], dim: int, out_channels: int, norm: Norm,
        dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        conv = conv_type(spatial_dims)
        self.mode = interp_mode(spatial_dims)
        self.linear = nn.ModuleList([conv(w, dim, 1) for w in widths])
        self.fuse = ConvNormAct(spatial_dims, dim * len(widths), dim, 1, norm=norm, act=Act.RELU)
        self.dropout = nn.Dropout(dropout)
        self.classify = conv(dim, out_channels, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[2:]
        maps = []
        for linear, f in zip(self.linear, features):
            y = linear(f)
            if y.shape[2:] != size:
                y = F.interpolate(y, size=size, mode=self.mode, align_corners=False)
            maps.append(y)
        return self.classify(self.dropout(self.fuse(torch.cat(maps[::-1], dim=1))))


class SegFormer(nn.Module):
    """SegFormer: MiT encoder and all-MLP decoder, logits upsampled to the input size
    (``[B, C_in, *spatial] -> [B, out_channels, *spatial]``); see :class:`SegFormerParams`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: SegFormerParams) -> None:
        super().__init__()
        widths = tuple(p.widths or ())
        self.mode = interp_mode(spatial_dims)
        self.encoder = MixTransformer(
            spatial_dims,
            in_channels,
            widths,
            p.depths or (),
            p.heads or (),
            [as_tuple(r, spatial_dims) for r in p.sr_ratios or ()],
            [as_tuple(s, spatial_dims) for s in p.strides or ()],
            p.mlp_ratio,
            p.dropout,
            p.attention_dropout,
        )
        self.decoder = AllMLPDecoder(
            spatial_dims, widths, p.decoder_dim, out_channels, p.norm, p.decoder_dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.encoder(x))
        if logits.shape[2:] == x.shape[2:]:
            return logits
        return F.interpolate(logits, size=x.shape[2:], mode=self.mode, align_corners=False)


def build_segformer(
    spatial_dims: int, in_channels: int, out_channels: int, params: SegFormerParams
) -> nn.Module:
    """Registry builder of ``segformer``: a :class:`SegFormer`,
    ``[B, C_in, *spatial] -> [B, C_out, *spatial]``."""
    return SegFormer(spatial_dims, in_channels, out_channels, params)
