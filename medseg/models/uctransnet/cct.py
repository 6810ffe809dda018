"""Channel-wise Cross fusion Transformer (CCT) of UCTransNet (Wang et al., AAAI 2022), 2D and 3D.

The CCT replaces the plain skip connections of a U-Net. Each encoder level
``i`` (all but the bottleneck) is cut into patches of size ``token_stride / 2**i``
so that every level yields the same token grid; a patch embedding maps level
``i`` to tokens of width ``E_i``. In each transformer layer, every level's
tokens query the concatenation of all levels' tokens (width ``sum(E_i)``)
through *channel-wise* multi-head cross-attention: the attention matrix is
``E_i x sum(E_j)`` (channels attend to channels, aggregating over token
positions), instance-normalised per head, soft-maxed, averaged over heads.
A per-level MLP follows; the encoded tokens are reshaped back to the token
grid, upsampled by the patch size, projected with a 1x1 conv and added to the
level's encoder features.

Differences from the original 2D code: learned position embeddings live on a
reference grid (``pos_grid`` per axis) and are interpolated to the actual token
grid, so any input size works; 3D volumes use 3D patches; the token width
``E_i`` may differ from the level's channel count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models._blocks import conv_type, make_norm
from medseg.models._params import Norm
from medseg.models._transformer import Mlp, resize_embedding


class PatchEmbedding(nn.Module):
    """Strided conv patch embedding plus learned, resizable position embeddings."""

    def __init__(
        self, spatial_dims: int, channels: int, embed_dim: int, patch: int, pos_grid: int, dropout: float
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.proj = conv_type(spatial_dims)(channels, embed_dim, patch, stride=patch)
        # zeros, like the original; shape [1, E, *grid] so it can be interpolated to the token grid
        self.position = nn.Parameter(torch.zeros(1, embed_dim, *(pos_grid,) * spatial_dims))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Tokens ``[B, N, E]`` and the token grid shape."""
        x = self.proj(x)
        grid = tuple(int(s) for s in x.shape[2:])
        x = x + resize_embedding(self.position, grid)
        return self.dropout(x.flatten(2).transpose(1, 2)), grid


class ChannelCrossAttention(nn.Module):
    """Multi-head channel-wise cross-attention of every level's tokens over all levels' tokens."""

    def __init__(self, embed_dims: Sequence[int], num_heads: int, attention_dropout: float, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.kv_size = sum(embed_dims)
        self.queries = nn.ModuleList([nn.Linear(e, e * num_heads, bias=False) for e in embed_dims])
        self.key = nn.Linear(self.kv_size, self.kv_size * num_heads, bias=False)
        self.value = nn.Linear(self.kv_size, self.kv_size * num_heads, bias=False)
        self.out = nn.ModuleList([nn.Linear(e, e, bias=False) for e in embed_dims])
        self.attn_dropout = nn.Dropout(attention_dropout)
        self.proj_dropout = nn.Dropout(dropout)

    def _heads(self, t: torch.Tensor, width: int) -> torch.Tensor:
        """``[B, N, H*W]`` -> ``[B, H, W, N]`` (channels first: attention is over channels)."""
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, width).permute(0, 2, 3, 1)

    def forward(self, tokens: Sequence[torch.Tensor], all_tokens: torch.Tensor) -> list[torch.Tensor]:
        key = self._heads(self.key(all_tokens), self.kv_size)  # [B, H, KV, N]
        value = self._heads(self.value(all_tokens), self.kv_size)  # [B, H, KV, N]
        outs = []
        for t, q_proj, o_proj in zip(tokens, self.queries, self.out):
            q = self._heads(q_proj(t), t.shape[-1])  # [B, H, E, N]
            scores = torch.matmul(q, key.transpose(-1, -2)) / math.sqrt(self.kv_size)  # [B, H, E, KV]
            # instance norm of each head's attention map (the paper's psi), no affine
            mean = scores.mean(dim=(-2, -1), keepdim=True)
            var = scores.var(dim=(-2, -1), keepdim=True, unbiased=False)
            scores = (scores - mean) / torch.sqrt(var + 1e-5)
            probs = self.attn_dropout(torch.softmax(scores, dim=-1))
            context = torch.matmul(probs, value).mean(dim=1)  # [B, E, N], mean over heads
            outs.append(self.proj_dropout(o_proj(context.transpose(1, 2))))
        return outs


class CCTLayer(nn.Module):
    """One CCT layer: pre-norm channel cross-attention and per-level MLPs, both residual."""

    def __init__(
        self,
        embed_dims: Sequence[int],
        num_heads: int,
        mlp_ratio: float,
        attention_dropout: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.attn_norms = nn.ModuleList([nn.LayerNorm(e, eps=1e-6) for e in embed_dims])
        self.attn_norm_all = nn.LayerNorm(sum(embed_dims), eps=1e-6)
        self.attention = ChannelCrossAttention(embed_dims, num_heads, attention_dropout, dropout)
        self.ffn_norms = nn.ModuleList([nn.LayerNorm(e, eps=1e-6) for e in embed_dims])
        self.ffns = nn.ModuleList([Mlp(e, mlp_ratio, dropout) for e in embed_dims])

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        all_tokens = self.attn_norm_all(torch.cat(tokens, dim=-1))
        normed = [norm(t) for norm, t in zip(self.attn_norms, tokens)]
        attended = self.attention(normed, all_tokens)
        tokens = [t + a for t, a in zip(tokens, attended)]
        return [t + ffn(norm(t)) for t, norm, ffn in zip(tokens, self.ffn_norms, self.ffns)]


class Reconstruct(nn.Module):
    """Tokens back to a feature map: reshape to the grid, upsample by the patch size, 1x1 conv-norm-ReLU."""

    def __init__(self, spatial_dims: int, embed_dim: int, channels: int, patch: int, norm: Norm) -> None:
        super().__init__()
        self.patch = patch
        self.conv = conv_type(spatial_dims)(embed_dim, channels, 1, bias=False)
        self.norm = make_norm(norm, spatial_dims, channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        b, _, e = tokens.shape
        x = tokens.transpose(1, 2).reshape(b, e, *grid)
        if self.patch > 1:
            x = F.interpolate(x, scale_factor=float(self.patch), mode="nearest")
        return self.act(self.norm(self.conv(x)))


class ChannelTransformer(nn.Module):
    """The CCT: embeds every skip level, runs ``num_layers`` CCT layers, adds the result back to the skips.

    Args:
        spatial_dims: 2 or 3.
        channels: channel count of each skip level, finest first.
        embed_dims: token width of each level.
        patch_sizes: patch size of each level (``token_stride / 2**level``).
        num_layers: transformer depth.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / token width.
        pos_grid: reference token-grid size (per axis) of the position embeddings.
        attention_dropout, dropout, embedding_dropout: dropout probabilities.
        norm: normalisation of the reconstruction convs.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: Sequence[int],
        embed_dims: Sequence[int],
        patch_sizes: Sequence[int],
        num_layers: int,
        num_heads: int,
        mlp_ratio: float,
        pos_grid: int,
        attention_dropout: float,
        dropout: float,
        embedding_dropout: float,
        norm: Norm,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            [
                PatchEmbedding(spatial_dims, c, e, p, pos_grid, embedding_dropout)
                for c, e, p in zip(channels, embed_dims, patch_sizes)
            ]
        )
        self.layers = nn.ModuleList(
            [
                CCTLayer(embed_dims, num_heads, mlp_ratio, attention_dropout, dropout)
                for _ in range(num_layers)
            ]
        )
        self.final_norms = nn.ModuleList([nn.LayerNorm(e, eps=1e-6) for e in embed_dims])
        self.reconstruct = nn.ModuleList(
            [Reconstruct(spatial_dims, e, c, p, norm) for c, e, p in zip(channels, embed_dims, patch_sizes)]
        )

    def forward(self, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        embedded = [emb(s) for emb, s in zip(self.embeddings, skips)]
        tokens = [t for t, _ in embedded]
        grid = embedded[0][1]
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = [norm(t) for norm, t in zip(self.final_norms, tokens)]
        return [s + rec(t, grid) for s, rec, t in zip(skips, self.reconstruct, tokens)]
