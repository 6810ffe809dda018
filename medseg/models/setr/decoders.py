"""The three SETR decoders (Zheng et al., CVPR 2021), 2D and 3D.

Each takes encoder feature maps ``[B, E, *grid]`` (``grid = spatial / patch``) and returns
logits ``[B, out_channels, *spatial]`` at the input size ``spatial``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medseg.models._blocks import ConvNormAct, conv_type, resize_to
from medseg.models._params import Act, Norm


def _scaled(grid: Sequence[int], factor: Sequence[int], patch: Sequence[int]) -> tuple[int, ...]:
    """The grid upsampled by ``factor`` per axis, at most to the input resolution (``patch``)."""
    return tuple(g * min(f, p) for g, f, p in zip(grid, factor, patch))


class NaiveDecoder(nn.Module):
    """SETR-Naive: 1x1 conv-norm-ReLU, 1x1 classifier, (bi/tri)linear upsampling to the input."""

    def __init__(
        self, spatial_dims: int, embed_dim: int, channels: int, out_channels: int, norm: Norm
    ) -> None:
        super().__init__()
        self.conv = ConvNormAct(spatial_dims, embed_dim, channels, 1, norm=norm, act=Act.RELU)
        self.classify = conv_type(spatial_dims)(channels, out_channels, 1)

    def forward(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        return resize_to(self.classify(self.conv(features[-1])), size)


class PUPDecoder(nn.Module):
    """SETR-PUP (progressive upsampling): ``ceil(log2(max patch))`` stages of 3x3 conv-norm-ReLU
    followed by x2 upsampling (on the axes still below the input resolution), then a 1x1
    classifier at the input resolution."""

    def __init__(
        self, spatial_dims: int, embed_dim: int, channels: int, out_channels: int, norm: Norm,
        patch: Sequence[int],
    ) -> None:  # fmt: skip
        super().__init__()
        self.patch = tuple(patch)
        n_stages = max(1, math.ceil(math.log2(max(self.patch))))
        self.stages = nn.ModuleList(
            [
                ConvNormAct(
                    spatial_dims, embed_dim if i == 0 else channels, channels, 3, norm=norm, act=Act.RELU
                )
                for i in range(n_stages)
            ]
        )
        self.classify = conv_type(spatial_dims)(channels, out_channels, 1)

    def forward(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        x = features[-1]
        grid = x.shape[2:]
        for i, stage in enumerate(self.stages):
            last = i == len(self.stages) - 1
            target = size if last else _scaled(grid, [2 ** (i + 1)] * len(grid), self.patch)
            x = resize_to(stage(x), target)
        return self.classify(x)


class MLADecoder(nn.Module):
    """SETR-MLA (multi-level feature aggregation).

    The features of several transformer layers each get a 1x1 conv-norm-ReLU (lateral); top-down
    aggregation adds each lateral to the running sum from the deepest layer down, each sum
    refined by a 3x3 conv-norm-ReLU; every stream then gets a 3x3 conv-norm-ReLU and x4
    upsampling; the streams are concatenated, classified by a 1x1 conv and upsampled to the input.
    """

    def __init__(
        self, spatial_dims: int, embed_dim: int, channels: int, out_channels: int, norm: Norm,
        patch: Sequence[int], n_layers: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.patch = tuple(patch)

        def cna(cin: int, k: int) -> ConvNormAct:
            return ConvNormAct(spatial_dims, cin, channels, k, norm=norm, act=Act.RELU)

        self.lateral = nn.ModuleList([cna(embed_dim, 1) for _ in range(n_layers)])
        self.aggregate = nn.ModuleList([cna(channels, 3) for _ in range(n_layers)])
        self.streams = nn.ModuleList([cna(channels, 3) for _ in range(n_layers)])
        self.classify = conv_type(spatial_dims)(channels * n_layers, out_channels, 1)

    def forward(self, features: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        sums: list[torch.Tensor] = []
        running: torch.Tensor | None = None
        for lat in reversed(laterals):  # top-down: deepest layer first
            running = lat if running is None else running + lat
            sums.append(running)
        sums.reverse()
        grid = features[0].shape[2:]
        up = _scaled(grid, [4] * len(grid), self.patch)
        streams = [
            resize_to(stream(agg(s)), up) for s, agg, stream in zip(sums, self.aggregate, self.streams)
        ]
        return resize_to(self.classify(torch.cat(streams, dim=1)), size)
