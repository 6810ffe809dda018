"""PSANet: Zhao, Zhang, Liu, Shi, Loy, Lin, Jia, "PSANet: Point-wise Spatial Attention Network for
Scene Parsing", ECCV 2018; 2D and 3D.

Dilated residual encoder (the DeepLab one) -> point-wise spatial attention with
a *collect* and a *distribute* branch -> their outputs projected, concatenated
with the encoder features -> 3x3 conv-norm-act, dropout -> 1x1 classifier ->
linear upsampling to the input size.

Each branch reduces the features ``[B, C, *s]`` (``N = prod(s)`` positions, e.g.
``N = H*W``) with a 1x1 conv to ``[B, r, N]`` and predicts, at every position
``p``, an *over-completed* attention map of ``mask_size`` cells per axis centred
on ``p`` (``(2H-1) x (2W-1)`` in the paper, which covers every other position
wherever ``p`` is). Cropping each map to the feature map gives the dense
attention ``A[p, q]``: the weight position ``p`` gives position ``q``
(:func:`over_complete_attention`; row ``p`` is ``p``'s cropped map), normalised over
``q`` by a softmax. The collect branch aggregates ``out[:, p] = sum_q A[p, q] h[:, q]``
(``p`` gathers with its own weights); the distribute branch uses the transpose,
``out[:, q] = sum_p A[p, q] h[:, p]`` (``p`` spreads its feature with its weights).

Memory: each branch builds ``B * N^2`` attention values (``N^2 = (HW)^2`` in 2D,
``(HWD)^2`` in 3D) in float32, kept about three times for the softmax and the
backward pass, plus one shared ``N^2`` int64 gather index and ``B * N *
prod(mask_size)`` predicted map values. A feature map with ``N^2`` above
``max_attention_elements`` is refused with a :class:`~medseg.errors.ConfigError` before anything
is allocated; the default (``2**24``) allows a 64x64 (2D) or 16x16x16 (3D)
feature map, about 0.2 GiB per branch and sample.

Differences from the paper: when the feature map has more than
``(mask_size + 1) / 2`` cells along an axis, positions farther apart than
``(mask_size - 1) / 2`` get zero attention (as in the authors' released
``PSAMask`` operator with a fixed mask size); the paper's full map is
``mask_size >= 2 * size - 1``.
"""

from __future__ import annotations

import functools
import math
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from medseg.errors import ConfigError
from medseg.models._blocks import ConvNormAct, conv_type, resize_to
from medseg.models._dilated import DilatedEncoderParams
from medseg.models._params import Act, Norm, PerAxis, as_tuple, check_axis_value, spatial_dims_of


class PSAType(str, Enum):
    """Which attention branches PSANet uses."""

    COLLECT = "collect"
    DISTRIBUTE = "distribute"
    BIDIRECTIONAL = "bidirectional"


class PSANetParams(DilatedEncoderParams):
    """Parameters of ``psanet``: the encoder's (see :class:`DilatedEncoderParams`) and the head's."""

    psa_type: PSAType = Field(
        PSAType.BIDIRECTIONAL, description="attention branches: collect, distribute or bidirectional (both)"
    )
    reduced_channels: int = Field(32, ge=1, description="channels r of each branch's reduced features [512]")
    mask_size: PerAxis = Field(
        15,
        description="cells per axis of the over-completed attention map each position predicts (odd; int "
        "or one per axis); the full map of the paper for feature maps up to (mask_size+1)/2 per axis, "
        "beyond that positions attend within +-(mask_size-1)/2 [2*size-1]",
    )
    attention_softmax: bool = Field(True, description="normalise each position's attention with a softmax")
    head_channels: int = Field(64, ge=1, description="channels of the 3x3 conv before the classifier [512]")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the classifier [0.1]")
    max_attention_elements: int = Field(
        2**24,
        ge=1,
        description="largest N^2 (N = positions of the encoder's feature map) a branch may build per sample; "
        "larger feature maps are refused (memory ~ 12 bytes * N^2 per branch and sample)",
    )

    @field_validator("mask_size")
    @classmethod
    def _mask(cls, v: PerAxis, info: ValidationInfo) -> PerAxis:
        check_axis_value(v, spatial_dims_of(info), "mask_size")
        if any(m % 2 == 0 for m in ((v,) if isinstance(v, int) else v)):
            raise ValueError(f"mask_size must be odd, got {v}")
        return v

    def per_axis_values(self) -> list[PerAxis]:
        return [*super().per_axis_values(), self.mask_size]


@functools.lru_cache(maxsize=1)
def attention_index(size: tuple[int, ...], mask: tuple[int, ...]) -> torch.Tensor:
    """``[N, N]``: for ``A[p, q]`` (see :func:`over_complete_attention`), the cell of ``p``'s map at
    the offset ``q - p`` (row-major over the mask), or ``K = prod(mask)`` (the fill cell) outside it.
    Cached (shared by the branches and by repeated sizes); do not modify the result."""
    n = math.prod(size)
    # numpy, so that an ONNX export sees a constant (it depends only on the static sizes)
    axes = np.meshgrid(*[np.arange(s) for s in size], indexing="ij")
    cell = np.zeros((n, n), dtype=np.int64)
    inside = np.ones((n, n), dtype=bool)
    for coord, m in zip(axes, mask):  # one axis at a time: [N, N] temporaries only
        c = coord.reshape(n)
        offset = c[None, :] - c[:, None] + (m - 1) // 2  # [p, q]: offset of q from p, shifted to >= 0
        inside &= (offset >= 0) & (offset < m)
        cell = cell * m + offset
    return torch.from_numpy(np.where(inside, cell, math.prod(mask)))


def over_complete_attention(
    maps: torch.Tensor, mask: tuple[int, ...], fill: float = 0.0, index: torch.Tensor | None = None
) -> torch.Tensor:
    """The dense attention ``[B, N, N]`` from over-completed maps ``[B, prod(mask), *s]``.

    ``maps[b, :, p]`` is the map predicted at position ``p``, ``mask`` cells per axis centred on
    ``p`` (row-major); ``A[b, p, q]`` is its cell at the offset ``q - p``, i.e. row ``p`` is the
    map cropped to the feature map, and ``fill`` where ``q - p`` falls outside the mask.

    Args:
        maps: ``[B, prod(mask), *s]`` predicted maps.
        mask: cells per axis of each map (odd).
        fill: value of out-of-mask pairs (``-inf`` before a softmax).
        index: :func:`attention_index` ``(s, mask)``, if already computed.
    """
    size = tuple(int(s) for s in maps.shape[2:])
    if index is None:
        index = attention_index(size, mask)
    flat = F.pad(maps.flatten(2).transpose(1, 2), (0, 1), value=fill)  # [B, N, K + 1]
    # out[b, p, q] = flat[b, p, index[p, q]]: a gather along the cells (backward: a scatter-add)
    return torch.gather(flat, 2, index.to(maps.device).expand(flat.shape[0], -1, -1))


class PointwiseSpatialAttention(nn.Module):
    """One PSA branch: ``[B, C, *s] -> [B, r, *s]`` (collect, or distribute with ``transpose``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels ``C`` of the features.
        reduced: channels ``r`` of the reduced features.
        mask: cells per axis of the over-completed map.
        distribute: use the transposed attention (the distribute branch).
        softmax: normalise each position's attention over the positions it weights.
        max_elements: refuse feature maps with more than this many ``N^2`` attention values.
        norm, act: normalisation and activation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        reduced: int,
        mask: tuple[int, ...],
        distribute: bool,
        softmax: bool,
        max_elements: int,
        norm: Norm,
        act: Act,
    ) -> None:
        super().__init__()
        self.mask, self.distribute, self.softmax, self.max_elements = mask, distribute, softmax, max_elements
        n_cells = math.prod(mask)
        self.reduce = ConvNormAct(spatial_dims, in_channels, reduced, 1, norm=norm, act=act)
        self.predict = nn.Sequential(
            ConvNormAct(spatial_dims, reduced, reduced, 1, norm=norm, act=act),
            conv_type(spatial_dims)(reduced, n_cells, 1),
        )
        self._index: tuple[tuple[int, ...], torch.Tensor] | None = None  # cache of the last size

    def _attention_index(self, size: tuple[int, ...], device: torch.device) -> torch.Tensor:
        n = math.prod(size)
        if n * n > self.max_elements:
            raise ConfigError(
                f"PSANet attention over a {'x'.join(map(str, size))} feature map needs N^2 = {n * n} "
                f"elements per branch and sample, more than max_attention_elements={self.max_elements} "
                f"(use smaller patches or a larger output_stride)"
            )
        if self._index is None or self._index[0] != size or self._index[1].device != device:
            self._index = (size, attention_index(size, self.mask).to(device))
        return self._index[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(int(s) for s in x.shape[2:])
        index = self._attention_index(size, x.device)
        h = self.reduce(x)
        fill = float("-inf") if self.softmax else 0.0
        attn = over_complete_attention(self.predict(h), self.mask, fill, index)  # [B, N(p), N(q)]
        if self.softmax:
            attn = torch.softmax(attn, dim=-1)
        # collect: out[:, p] = sum_q A[p, q] h[:, q]; distribute: out[:, q] = sum_p A[p, q] h[:, p]
        return torch.bmm(h.flatten(2), attn if self.distribute else attn.transpose(1, 2)).view_as(h)


class PSANet(nn.Module):
    """PSANet: ``[B, in_channels, *spatial] -> [B, out_channels, *spatial]`` logits (spatial a multiple
    of ``output_stride``). See :class:`PSANetParams` and the module docstring."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: PSANetParams) -> None:
        super().__init__()
        self.encoder = p.encoder(spatial_dims, in_channels)
        c = p.features[-1]
        kinds = {
            PSAType.COLLECT: [False],
            PSAType.DISTRIBUTE: [True],
            PSAType.BIDIRECTIONAL: [False, True],
        }[PSAType(p.psa_type)]
        mask = as_tuple(p.mask_size, spatial_dims)
        self.branches = nn.ModuleList(
            PointwiseSpatialAttention(
                spatial_dims,
                c,
                p.reduced_channels,
                mask,
                distribute,
                p.attention_softmax,
                p.max_attention_elements,
                p.norm,
                p.act,
            )
            for distribute in kinds
        )
        self.project = ConvNormAct(
            spatial_dims, p.reduced_channels * len(kinds), c, 1, norm=p.norm, act=p.act
        )
        self.head = nn.Sequential(
            ConvNormAct(spatial_dims, 2 * c, p.head_channels, 3, norm=p.norm, act=p.act, dropout=p.dropout),
            conv_type(spatial_dims)(p.head_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)[-1]
        context = self.project(torch.cat([b(feats) for b in self.branches], dim=1))
        return resize_to(self.head(torch.cat([feats, context], dim=1)), tuple(x.shape[2:]))


def build_psanet(spatial_dims: int, in_channels: int, out_channels: int, params: PSANetParams) -> nn.Module:
    """Registry builder of ``psanet``."""
    return PSANet(spatial_dims, in_channels, out_channels, params)
