"""ParseNet (Liu, Rabinovich, Berg: "ParseNet: Looking Wider to See Better", ICLR 2016 workshop,
arXiv:1506.04579), 2D and 3D, trained from scratch.

An FCN (:class:`~medseg.models.fcn.model.FCN`, same VGG-style encoder and
fc6/fc7) whose fc7 features are given global context before the score layer:

1. global average pooling of the fc7 map ``[B, C, *s] -> [B, C, 1, ...]``;
2. L2 normalisation across channels of the local features (at each position) and of the
   global vector, each followed by a learnable per-channel scale (the paper's remedy for
   features of very different magnitudes; ``l2_norm=False`` is its ablation);
3. "unpooling": the global vector broadcast to every position, concatenated with the local
   features, ``[B, 2C, *s]``;
4. the 1x1 score layer, then FCN's skip fusion (``variant``; the paper used the single-stream
   32s form, the default here) and upsampling to the input size.

So every output position sees the whole (padded) input, however small the
convolutional receptive field.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from medseg.models._vgg import spatial_mean
from medseg.models.fcn.model import FCN, FCNParams, FCNVariant


class ParseNetParams(FCNParams):
    """Parameters of ``parsenet``: those of ``fcn`` plus the global context's."""

    variant: FCNVariant = Field(
        FCNVariant.S32,
        description="FCN skip architecture after the context fusion: 32s [paper], 16s or 8s",
    )
    l2_norm: bool = Field(
        True, description="L2-normalise local and global features with learnable scales (False: ablation)"
    )
    scale_init: float = Field(
        10.0, gt=0, description="initial value of the learnable per-channel scales after L2 normalisation"
    )


class L2Norm(nn.Module):
    """L2 normalisation across channels at each position, times a learnable per-channel scale:
    ``[B, C, *s] -> [B, C, *s]``, ``y = scale * x / max(||x||_2, min_norm)``.

    The floor ``min_norm`` (1 by default; post-ReLU features of unit variance have a norm of about
    ``sqrt(C / 2)``) keeps positions whose features are (nearly) all zero after the ReLU from
    turning float rounding into large logit changes: below it the layer is linear, above it an
    exact L2 normalisation.
    """

    def __init__(self, channels: int, scale_init: float, min_norm: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), float(scale_init)))
        self.min_norm = min_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt((x * x).sum(dim=1, keepdim=True).clamp_min(self.min_norm**2))
        return x / norm * self.scale.view(1, -1, *(1,) * (x.ndim - 2))


class GlobalContext(nn.Module):
    """ParseNet's context fusion: ``[B, C, *s] -> [B, 2C, *s]``, the (normalised) local features
    concatenated with the (normalised) global average broadcast to every position."""

    def __init__(self, channels: int, l2_norm: bool, scale_init: float) -> None:
        super().__init__()
        self.local_norm: nn.Module = L2Norm(channels, scale_init) if l2_norm else nn.Identity()
        self.global_norm: nn.Module = L2Norm(channels, scale_init) if l2_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_norm(spatial_mean(x))
        return torch.cat([self.local_norm(x), pooled.expand_as(x)], dim=1)


class ParseNet(FCN):
    """ParseNet; see :class:`ParseNetParams`. ``forward(x[B, C_in, *spatial])`` gives logits
    ``[B, out_channels, *spatial]``."""

    def make_context(self, spatial_dims: int, p: FCNParams) -> tuple[nn.Module, int]:
        if not isinstance(p, ParseNetParams):
            raise TypeError(f"ParseNet needs ParseNetParams, got {type(p).__name__}")
        return GlobalContext(p.fc_channels, p.l2_norm, p.scale_init), 2 * p.fc_channels


def build_parsenet(
    spatial_dims: int, in_channels: int, out_channels: int, params: ParseNetParams
) -> nn.Module:
    """Registry builder of ``parsenet``: ``[B, in_channels, *spatial] -> [B, out_channels, *spatial]``."""
    return ParseNet(spatial_dims, in_channels, out_channels, params)
