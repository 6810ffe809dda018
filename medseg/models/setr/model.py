"""SETR (Zheng, Lu, Zhao, Zhu, Luo, Wang, Fu, Feng, Xiang, Torr, Zhang: "Rethinking Semantic
Segmentation from a Sequence-to-Sequence Perspective with Transformers", CVPR 2021), 2D and 3D,
trained from scratch.

Encoder: a ViT (Dosovitskiy et al., ICLR 2021) on the input ``[B, C_in, *spatial]``: patch
embedding by a convolution with kernel = stride = ``patch_size`` (per axis), plus learned position
embeddings stored on a reference grid (``pos_grid``) and (bi/tri)linearly interpolated to the
actual token grid ``spatial / patch_size``, so any input size works; ``depth`` pre-norm
transformer blocks (multi-head self-attention through ``scaled_dot_product_attention``, MLP).
Decoder (:mod:`.decoders`): ``naive``, ``pup`` (progressive upsampling) or ``mla`` (multi-level
aggregation of the layers ``mla_layers``). Output: logits ``[B, out_channels, *spatial]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from medseg.models._blocks import conv_type
from medseg.models._params import ModelParams, Norm, PerAxis, as_tuple, check_axis_value, spatial_dims_of
from medseg.models._transformer import TransformerBlock, resize_embedding, to_map, to_tokens
from medseg.models.setr.decoders import MLADecoder, NaiveDecoder, PUPDecoder


class SETRDecoder(str, Enum):
    """SETR's decoders."""

    NAIVE = "naive"
    PUP = "pup"
    MLA = "mla"


class SETRParams(ModelParams):
    """Parameters of ``setr`` (paper values, SETR with ViT-Large, in brackets)."""

    embed_dim: int = Field(768, ge=1, description="token width, a multiple of heads [1024]")
    depth: int = Field(12, ge=1, description="transformer layers [24]")
    heads: int = Field(12, ge=1, description="attention heads [16]")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width / token width [4]")
    patch_size: PerAxis = Field(
        16, description="patch size (input voxels per token), an int or one per axis [16]"
    )
    pos_grid: PerAxis = Field(
        8,
        description="reference token grid of the learned position embeddings, an int or one per axis "
        "(interpolated to the actual grid)",
    )
    decoder: SETRDecoder = Field(SETRDecoder.PUP, description="decoder: 'naive', 'pup' or 'mla'")
    decoder_channels: int = Field(256, ge=1, description="width of the decoder's convolutions [256]")
    mla_layers: tuple[int, ...] | None = Field(
        None,
        description="decoder 'mla' only: the transformer layers (1 to depth, increasing) whose outputs "
        "it aggregates; default 4 evenly spaced layers ending with the last [6, 12, 18, 24]",
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout of embeddings, attention output and MLP [0.1]"
    )
    attention_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on attention weights [0]")
    norm: Norm = Field(Norm.INSTANCE, description="normalisation of the decoder's convolutions [batch]")

    @field_validator("patch_size", "pos_grid")
    @classmethod
    def _per_axis(cls, v: PerAxis, info: ValidationInfo) -> PerAxis:
        return check_axis_value(v, spatial_dims_of(info), info.field_name or "value")

    @model_validator(mode="after")
    def _resolve(self) -> SETRParams:
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not a multiple of heads {self.heads}")
        if self.decoder is not SETRDecoder.MLA:
            if self.mla_layers is not None:
                raise ValueError(f"mla_layers is only used by decoder 'mla', not '{self.decoder.value}'")
            return self
        if self.mla_layers is None:
            n = min(4, self.depth)
            object.__setattr__(self, "mla_layers", tuple(round(self.depth * (i + 1) / n) for i in range(n)))
            return self
        layers = list(self.mla_layers)
        if not layers:
            raise ValueError("mla_layers needs at least one layer")
        for layer in layers:
            if layer < 1 or layer > self.depth:
                raise ValueError(
                    f"mla_layers entry {layer} is outside the encoder's layers 1 to depth={self.depth}"
                )
        if layers != sorted(set(layers)):
            raise ValueError(f"mla_layers must be strictly increasing, got {layers}")
        if layers[-1] != self.depth:
            raise ValueError(
                f"mla_layers must end with the last layer ({self.depth}): layers after {layers[-1]} "
                f"would be unused (lower depth instead)"
            )
        return self

    def feature_layers(self) -> tuple[int, ...]:
        """The layers (1-based) whose outputs the decoder reads."""
        return tuple(self.mla_layers or ()) if self.decoder is SETRDecoder.MLA else (self.depth,)

    def divisor(self, spatial_dims: int) -> tuple[int, ...]:
        return as_tuple(self.patch_size, spatial_dims)


class ViTEncoder(nn.Module):
    """ViT encoder: ``[B, C_in, *spatial]`` -> the token maps ``[B, E, *spatial / patch]`` after the
    requested layers, each through its own final LayerNorm.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        embed_dim: token width ``E``.
        depth: transformer layers.
        heads: attention heads.
        mlp_ratio: MLP hidden width / ``E``.
        patch: patch size per axis.
        pos_grid: reference grid of the position embeddings per axis.
        layers: 1-based layers whose outputs :meth:`forward` returns.
        dropout, attention_dropout: dropout probabilities.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, embed_dim: int, depth: int, heads: int,
        mlp_ratio: float, patch: Sequence[int], pos_grid: Sequence[int], layers: Sequence[int],
        dropout: float = 0.0, attention_dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.layers = tuple(layers)
        self.patch_embedding = conv_type(spatial_dims)(
            in_channels, embed_dim, tuple(patch), stride=tuple(patch)
        )
        self.position = nn.Parameter(torch.zeros(1, embed_dim, *pos_grid))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [TransformerBlock(embed_dim, heads, mlp_ratio, dropout, attention_dropout) for _ in range(depth)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dim, eps=1e-6) for _ in self.layers])

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Patch tokens plus position embeddings ``[B, N, E]``, and the token grid."""
        x = self.patch_embedding(x)
        grid = tuple(int(s) for s in x.shape[2:])
        return self.dropout(to_tokens(x + resize_embedding(self.position, grid))), grid

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens, grid = self.embed(x)
        out = []
        for i, block in enumerate(self.blocks[: max(self.layers)], start=1):
            tokens = block(tokens)
            if i in self.layers:
                out.append(to_map(self.norms[self.layers.index(i)](tokens), grid))
        return out


class SETR(nn.Module):
    """SETR: ViT encoder and one of the three decoders (``[B, C_in, *spatial] -> [B, C_out, *spatial]``);
    see :class:`SETRParams`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, p: SETRParams) -> None:
        super().__init__()
        patch = as_tuple(p.patch_size, spatial_dims)
        layers = p.feature_layers()
        self.encoder = ViTEncoder(
            spatial_dims, in_channels, p.embed_dim, p.depth, p.heads, p.mlp_ratio, patch,
            as_tuple(p.pos_grid, spatial_dims), layers, p.dropout, p.attention_dropout,
        )  # fmt: skip
        args = (spatial_dims, p.embed_dim, p.decoder_channels, out_channels, p.norm)
        if p.decoder is SETRDecoder.NAIVE:
            self.decoder: nn.Module = NaiveDecoder(*args)
        elif p.decoder is SETRDecoder.PUP:
            self.decoder = PUPDecoder(*args, patch)
        else:
            self.decoder = MLADecoder(*args, patch, len(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x), x.shape[2:])


def build_setr(spatial_dims: int, in_channels: int, out_channels: int, params: SETRParams) -> nn.Module:
    """Registry builder of ``setr``: a :class:`SETR`, ``[B, C_in, *spatial] -> [B, C_out, *spatial]``."""
    return SETR(spatial_dims, in_channels, out_channels, params)
