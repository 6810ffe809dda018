"""Mix Transformer (MiT) encoder of SegFormer (Xie et al., "SegFormer: Simple and Efficient Design
for Semantic Segmentation with Transformers", NeurIPS 2021), 2D and 3D.

Each stage embeds its input with an overlapped patch merging (a strided convolution whose kernel
is larger than its stride, padded, then LayerNorm), runs ``depth`` blocks of efficient
self-attention (keys and values spatially reduced by a strided convolution of ratio ``R``) and
Mix-FFN (Linear, 3x3 depth-wise convolution, GELU, Linear), each pre-norm and residual, and ends
with a LayerNorm. Stage ``i`` gives a feature map ``[B, C_i, *spatial / stride_1...stride_i]``.
No positional embedding: the depth-wise convolution of Mix-FFN leaks position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.models._blocks import conv_type
from medseg.models._transformer import Attention, to_map, to_tokens


def merge_kernel(stride: int) -> int:
    """Kernel of an overlapped patch merging with ``stride``: 7 for 4, 3 for 2 (the paper's), 3 for 1."""
    return max(3, 2 * stride - 1)


class OverlapPatchMerging(nn.Module):
    """Strided convolution with kernel > stride and 'same'-style padding, then LayerNorm.

    ``[B, C_in, *spatial]`` -> tokens ``[B, N, C]`` on the grid ``ceil(spatial / stride)``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, dim: int, stride: Sequence[int]) -> None:
        super().__init__()
        kernel = tuple(merge_kernel(s) for s in stride)
        self.proj = conv_type(spatial_dims)(
            in_channels, dim, kernel, stride=tuple(stride), padding=tuple(k // 2 for k in kernel)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Tokens ``[B, N, C]`` and their grid."""
        x = self.proj(x)
        return self.norm(to_tokens(x)), tuple(int(s) for s in x.shape[2:])


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from the token map reduced by a
    convolution with kernel = stride = ``sr_ratio`` (per axis) and a LayerNorm: the key length is
    ``N / prod(sr_ratio)`` (``N / R^d`` for an isotropic ratio ``R``). A ratio of 1 everywhere is
    plain multi-head self-attention. Tokens ``[B, N, C] -> [B, N, C]``."""

    def __init__(
        self, spatial_dims: int, dim: int, num_heads: int, sr_ratio: Sequence[int],
        attention_dropout: float = 0.0, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.attention = Attention(dim, num_heads, True, attention_dropout, dropout)
        self.reduce: nn.Module | None = None
        if any(r > 1 for r in sr_ratio):
            self.reduce = conv_type(spatial_dims)(dim, dim, tuple(sr_ratio), stride=tuple(sr_ratio))
            self.reduce_norm = nn.LayerNorm(dim, eps=1e-6)

    def keys(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """The tokens keys and values are computed from: ``[B, M, C]``, ``M = N / prod(sr_ratio)``."""
        if self.reduce is None:
            return x
        return self.reduce_norm(to_tokens(self.reduce(to_map(x, grid))))

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        return self.attention(x, self.keys(x, grid))


class MixFFN(nn.Module):
    """Mix-FFN: Linear, 3x3 depth-wise convolution on the token map, GELU, Linear
    (tokens ``[B, N, C] -> [B, N, C]``)."""

    def __init__(self, spatial_dims: int, dim: int, ratio: float, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = max(1, round(dim * ratio))
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = conv_type(spatial_dims)(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        x = to_tokens(self.dwconv(to_map(self.fc1(x), grid)))
        return self.dropout(self.fc2(self.dropout(self.act(x))))


class MiTBlock(nn.Module):
    """``x + EfficientSelfAttention(LN(x))`` then ``x + MixFFN(LN(x))``."""

    def __init__(
        self, spatial_dims: int, dim: int, num_heads: int, sr_ratio: Sequence[int], mlp_ratio: float,
        dropout: float, attention_dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = EfficientSelfAttention(
            spatial_dims, dim, num_heads, sr_ratio, attention_dropout, dropout
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = MixFFN(spatial_dims, dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), grid)
        return x + self.ffn(self.norm2(x), grid)


class MiTStage(nn.Module):
    """Overlapped patch merging, ``depth`` MiT blocks, LayerNorm: ``[B, C_in, *s] -> [B, C, *s / stride]``."""

    def __init__(
        self, spatial_dims: int, in_channels: int, dim: int, stride: Sequence[int], depth: int,
        num_heads: int, sr_ratio: Sequence[int], mlp_ratio: float, dropout: float,
        attention_dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.merge = OverlapPatchMerging(spatial_dims, in_channels, dim, stride)
        self.blocks = nn.ModuleList(
            [
                MiTBlock(spatial_dims, dim, num_heads, sr_ratio, mlp_ratio, dropout, attention_dropout)
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, grid = self.merge(x)
        for block in self.blocks:
            tokens = block(tokens, grid)
        return to_map(self.norm(tokens), grid)


class MixTransformer(nn.Module):
    """The hierarchical MiT encoder: ``[B, C_in, *spatial]`` -> one feature map per stage,
    ``[B, widths[i], *spatial / (strides[0] * ... * strides[i])]``, finest first."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        widths: Sequence[int],
        depths: Sequence[int],
        heads: Sequence[int],
        sr_ratios: Sequence[Sequence[int]],
        strides: Sequence[Sequence[int]],
        mlp_ratio: float,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        prev = in_channels
        for width, depth, h, sr, stride in zip(widths, depths, heads, sr_ratios, strides):
            self.stages.append(
                MiTStage(
                    spatial_dims, prev, width, stride, depth, h, sr, mlp_ratio, dropout, attention_dropout
                )
            )
            prev = width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
