"""UCTransNet (Wang, Cao, Wang, Zaiane: "UCTransNet: Rethinking the Skip Connections in U-Net
from a Channel-wise Perspective with Transformer", AAAI 2022), for 2D and 3D, multi-class.

Encoder: a U-Net encoder (conv blocks, 2x max pooling). Skips: all encoder
levels except the bottleneck go through the :class:`~.cct.ChannelTransformer`.
Decoder: at each level the coarser features are upsampled (nearest, x2); a
Channel-wise Cross Attention (CCA) gate re-weights the skip's channels with
``sigmoid((W_x avgpool(skip) + W_g avgpool(up)) / 2)`` (then ReLU); the gated
skip and the upsampled features are concatenated and convolved. A 1x1 conv
gives the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from medseg.models._blocks import conv_stack, conv_type, max_pool_type
from medseg.models._params import Act, ModelParams, Norm, is_power_of_two
from medseg.models.uctransnet.cct import ChannelTransformer


class UCTransNetParams(ModelParams):
    """Parameters of ``uctransnet`` (paper values in brackets)."""

    features: tuple[int, ...] = Field(
        (16, 32, 64, 128, 128),
        description="channels per encoder level, top to bottom, the last is the bottleneck "
        "[64, 128, 256, 512, 512]",
    )
    token_stride: int | None = Field(
        None,
        description="input pixels per token along each axis, a power of 2 >= 2**(levels-2); default "
        "2**(levels-1), the bottleneck's stride [16]",
    )
    embed_dims: tuple[int, ...] | None = Field(
        None,
        description="token width per skip level (len(features)-1 entries); default: the level's channels",
    )
    transformer_layers: int = Field(4, ge=1, description="CCT depth [4]")
    num_heads: int = Field(4, ge=1, description="attention heads of the channel cross-attention [4]")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width / token width [4]")
    pos_grid: int = Field(
        8, ge=1, description="reference token-grid size per axis of the learned position embeddings "
        "(interpolated to the actual grid)",
    )  # fmt: skip
    attention_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on attention maps [0.1]")
    embedding_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on patch embeddings [0.1]")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in attention output and MLP [0]")
    convs_per_level: int = Field(2, ge=1, description="conv-norm-act layers per level [2]")
    norm: Norm = Field(Norm.INSTANCE, description="normalisation: instance or batch [batch]")
    act: Act = Field(Act.RELU, description="activation of the conv blocks [relu]")

    @field_validator("features")
    @classmethod
    def _features(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) < 2 or any(c < 1 for c in v):
            raise ValueError("features needs at least 2 positive channel counts (one per level)")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> UCTransNetParams:
        n_skips = len(self.features) - 1
        deepest = 2 ** (n_skips - 1)
        if self.token_stride is None:
            object.__setattr__(self, "token_stride", 2**n_skips)
        if not is_power_of_two(self.token_stride) or self.token_stride < deepest:
            raise ValueError(
                f"token_stride must be a power of 2 and >= {deepest} (the stride of the deepest skip level "
                f"with {len(self.features)} levels), got {self.token_stride}"
            )
        if self.embed_dims is None:
            object.__setattr__(self, "embed_dims", tuple(self.features[:-1]))
        elif len(self.embed_dims) != n_skips or any(e < 1 for e in self.embed_dims):
            raise ValueError(
                f"embed_dims needs {n_skips} positive entries (one per skip level), "
                f"got {list(self.embed_dims)}"
            )
        return self

    def patch_sizes(self) -> list[int]:
        """Patch size of each skip level."""
        stride = self.token_stride or 2 ** (len(self.features) - 1)
        return [stride // 2**i for i in range(len(self.features) - 1)]

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return (max(self.token_stride or 1, 2 ** (len(self.features) - 1)),) * spatial_dims


class CCA(nn.Module):
    """Channel-wise Cross Attention: gate the skip's channels using the skip and the decoder features."""

    def __init__(self, skip_channels: int, up_channels: int) -> None:
        super().__init__()
        self.mlp_x = nn.Linear(skip_channels, skip_channels)
        self.mlp_g = nn.Linear(up_channels, skip_channels)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, skip.ndim))
        att = (self.mlp_x(skip.mean(dim=dims)) + self.mlp_g(up.mean(dim=dims))) / 2.0
        scale = torch.sigmoid(att).view(*att.shape, *(1,) * len(dims))
        return F.relu(skip * scale)


class UpBlockAttention(nn.Module):
    """Decoder level: nearest x2 upsampling, CCA-gated skip, concatenation, conv block."""

    def __init__(self, spatial_dims: int, in_channels: int, skip_channels: int, out_channels: int, **block):
        super().__init__()
        self.cca = CCA(skip_channels, in_channels)
        self.convs = conv_stack(spatial_dims, in_channels + skip_channels, out_channels, **block)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.convs(torch.cat([self.cca(up, skip), up], dim=1))


class UCTransNet(nn.Module):
    """UCTransNet; see :class:`UCTransNetParams` for the parameters."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: UCTransNetParams) -> None:
        super().__init__()
        f = p.features
        block = dict(n_convs=p.convs_per_level, norm=p.norm, act=p.act)
        self.encoder = nn.ModuleList([conv_stack(spatial_dims, in_channels, f[0], **block)])
        for i in range(1, len(f)):
            self.encoder.append(conv_stack(spatial_dims, f[i - 1], f[i], **block))
        self.pool = max_pool_type(spatial_dims)(2, 2)
        self.cct = ChannelTransformer(
            spatial_dims,
            channels=f[:-1],
            embed_dims=p.embed_dims or f[:-1],
            patch_sizes=p.patch_sizes(),
            num_layers=p.transformer_layers,
            num_heads=p.num_heads,
            mlp_ratio=p.mlp_ratio,
            pos_grid=p.pos_grid,
            attention_dropout=p.attention_dropout,
            dropout=p.dropout,
            embedding_dropout=p.embedding_dropout,
            norm=p.norm,
        )
        # decoder level i outputs the channels of level i-1, as in the original (up4: 1024 -> 256, ...)
        self.decoder = nn.ModuleList()
        prev = f[-1]
        for i in range(len(f) - 2, -1, -1):
            out = f[i - 1] if i > 0 else f[0]
            self.decoder.append(UpBlockAttention(spatial_dims, prev, f[i], out, **block))
            prev = out
        self.head = conv_type(spatial_dims)(prev, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.encoder[0](x)]
        for enc in self.encoder[1:]:
            skips.append(enc(self.pool(skips[-1])))
        x = skips.pop()
        skips = self.cct(skips)
        for dec, skip in zip(self.decoder, reversed(skips)):
            x = dec(x, skip)
        return self.head(x)


def build_uctransnet(
    spatial_dims: int, in_channels: int, out_channels: int, params: UCTransNetParams
) -> nn.Module:
    """Registry builder of ``uctransnet``."""
    return UCTransNet(spatial_dims, in_channels, out_channels, params)
