"""Residual encoder with atrous (dilated) last stages, for DeepLab, 2D and 3D.

A ResNet-style encoder (He et al. 2016, basic blocks): a strided stem conv,
then residual stages that each nominally halve the size. Along each axis,
once the cumulative stride reaches the requested output stride, the remaining
stages keep the resolution and multiply their dilation by the stride they
skip instead (the "replace stride with dilation" rule of DeepLabV3), so the
receptive field keeps growing. Strides, output strides and therefore
dilations are per axis, for anisotropic volumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medseg.models._blocks import ConvNormAct, ResidualBlock
from medseg.models._params import Act, Norm


@dataclass(frozen=True)
class StagePlan:
    """Effective stride and dilations of one encoder stage."""

    stride: tuple[int, ...]
    first_dilation: tuple[int, ...]
    dilation: tuple[int, ...]
    cumulative_stride: tuple[int, ...]


def plan_stages(
    strides: Sequence[tuple[int, ...]], output_stride: tuple[int, ...], atrous: bool = True
) -> list[StagePlan]:
    """Per-stage effective strides and dilations for a target per-axis output stride.

    Args:
        strides: nominal stride of each stage (stem first), one int per axis.
        output_stride: wanted total stride per axis; must be reached exactly by a
            prefix of the nominal strides.
        atrous: False sets every dilation to 1 (the ablation); strides are unchanged.

    Raises:
        ValueError: an output stride that no prefix of the strides reaches.
    """
    dims = len(output_stride)
    cum = [1] * dims
    dil = [1] * dims
    plans = []
    for s in strides:
        eff, first = [], []
        for a in range(dims):
            first.append(dil[a])
            if cum[a] * s[a] <= output_stride[a]:
                cum[a] *= s[a]
                eff.append(s[a])
            else:
                dil[a] *= s[a]
                eff.append(1)
        plans.append(
            StagePlan(
                stride=tuple(eff),
                first_dilation=tuple(first) if atrous else (1,) * dims,
                dilation=tuple(dil) if atrous else (1,) * dims,
                cumulative_stride=tuple(cum),
            )
        )
    if tuple(cum) != tuple(output_stride):
        raise ValueError(
            f"output_stride {list(output_stride)} is not reached by the stage strides "
            f"{[list(s) for s in strides]} (reached {cum}); it must be a product of a prefix of them"
        )
    return plans


class AtrousResidualEncoder(nn.Module):
    """Stem plus residual stages; returns the feature map of every stage (stem first).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        features: channels of the stem and of each stage.
        blocks: residual blocks per stage (``len(features) - 1`` entries).
        plans: :func:`plan_stages` output (``len(features)`` entries).
        norm, act: normalisation and activation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        features: Sequence[int],
        blocks: Sequence[int],
        plans: Sequence[StagePlan],
        norm: Norm,
        act: Act,
    ) -> None:
        super().__init__()
        stem = plans[0]
        self.stem = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, features[0], 3, stride=stem.stride, norm=norm, act=act),
            ConvNormAct(spatial_dims, features[0], features[0], 3, norm=norm, act=act),
        )
        self.stages = nn.ModuleList()
        for i, (n_blocks, plan) in enumerate(zip(blocks, plans[1:]), start=1):
            layers = [
                ResidualBlock(
                    spatial_dims,
                    features[i - 1],
                    features[i],
                    3,
                    stride=plan.stride,
                    dilation=plan.dilation,
                    first_dilation=plan.first_dilation,
                    norm=norm,
                    act=act,
                )
            ]
            layers += [
                ResidualBlock(
                    spatial_dims, features[i], features[i], 3, dilation=plan.dilation, norm=norm, act=act
                )
                for _ in range(n_blocks - 1)
            ]
            self.stages.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats
