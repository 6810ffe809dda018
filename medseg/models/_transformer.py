"""Transformer pieces shared by the attention-based families (UCTransNet, SegFormer, SETR), 2D and 3D.

Tokens are ``[B, N, C]`` with ``N`` the number of positions of a ``[B, C, *grid]`` feature
map, flattened in row-major order (:func:`to_tokens` / :func:`to_map`). Attention is
PyTorch's own :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels where
available, exported to ONNX as MatMul/Softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models._blocks import interp_mode


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """A feature map ``[B, C, *grid]`` as tokens ``[B, N, C]`` (``N = prod(grid)``, row-major)."""
    return x.flatten(2).transpose(1, 2)


def to_map(tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Tokens ``[B, N, C]`` back to the feature map ``[B, C, *grid]``."""
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, *grid)


def resize_embedding(position: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Learned position embeddings ``[1, C, *ref_grid]`` resized to ``[1, C, *grid]``.

    (Bi/tri)linear interpolation with ``align_corners=False`` (ONNX ``Resize`` with half-pixel
    coordinates); returned unchanged when ``grid`` is the reference grid.
    """
    grid = tuple(int(g) for g in grid)
    if tuple(position.shape[2:]) == grid:
        return position
    mode = interp_mode(position.ndim - 2)
    return F.interpolate(position, size=grid, mode=mode, align_corners=False)


class Mlp(nn.Module):
    """Token feed-forward network: Linear, GELU, dropout, Linear, dropout (``[B, N, C] -> [B, N, C]``)."""

    def __init__(self, dim: int, ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = max(1, round(dim * ratio))
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al., "Attention Is All You Need",
    NeurIPS 2017) through :func:`F.scaled_dot_product_attention`.

    Queries come from ``x [B, N, C]``, keys and values from ``context [B, M, C]`` (``x`` itself
    by default: self-attention); the output is ``[B, N, C]``.

    Args:
        dim: token width ``C`` (a multiple of ``num_heads``).
        num_heads: attention heads, each of width ``C / num_heads``.
        qkv_bias: biases on the query, key and value projections.
        attention_dropout: dropout on the attention weights (training only).
        dropout: dropout after the output projection.
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attention_dropout: float = 0.0,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"width {dim} is not a multiple of the {num_heads} attention heads")
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(dropout)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` -> ``[B, heads, N, C / heads]``."""
        b, n, c = t.shape
        return t.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        key, value = self.kv(context).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(
            self._heads(self.q(x)),
            self._heads(key),
            self._heads(value),
            dropout_p=self.attention_dropout if self.training else 0.0,
        )  # [B, heads, N, C / heads]
        b, _, n, _ = out.shape
        return self.proj_dropout(self.proj(out.transpose(1, 2).reshape(b, n, -1)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block (ViT, Dosovitskiy et al., ICLR 2021):
    ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, tokens ``[B, N, C] -> [B, N, C]``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = Attention(dim, num_heads, True, attention_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))
