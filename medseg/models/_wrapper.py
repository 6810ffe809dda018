"""The module every :func:`~medseg.models.build_model` call returns.

:class:`SegmentationModel` pads an input whose size is not a multiple of the
network's per-axis divisor (zeros at the end of each axis), runs the network
and crops the logits back, so callers may pass any spatial size. It also
carries ``medseg_config`` (everything needed to rebuild the model) and the
deep-supervision contract: in training mode a model built with
``deep_supervision=True`` returns ``[full_res, aux1, aux2, ...]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationModel(nn.Module):
    """A segmentation network behind the shared contract (see module docstring).

    Args:
        net: the network; its input size must be a multiple of ``divisor`` per axis.
        divisor: per-axis multiple the network needs.
        config: ``{"name", "spatial_dims", "in_channels", "out_channels", "params"}``.
        deep_supervision_scales: per-axis downsampling factor of each auxiliary output
            the network returns in training mode (empty if it returns one tensor).

    Attributes:
        medseg_config: the ``config`` above (a plain, JSON-able dict).
        divisor: per-axis multiple of the padded input size.
        deep_supervision_scales: as above.
    """

    def __init__(
        self,
        net: nn.Module,
        divisor: tuple[int, ...],
        config: dict[str, Any],
        deep_supervision_scales: list[tuple[int, ...]] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.divisor = tuple(int(d) for d in divisor)
        self.medseg_config = config
        self.deep_supervision_scales = list(deep_supervision_scales or [])
        self.spatial_dims = len(self.divisor)

    def extra_repr(self) -> str:
        return f"name={self.medseg_config.get('name')!r}, divisor={self.divisor}"

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``[B, out_channels, *spatial]`` (a list with the auxiliary outputs when
        deep supervision is on and the module is training)."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"expected a {self.spatial_dims + 2}D tensor [B, C, {'x'.join('*' * self.spatial_dims)}], "
                f"got shape {tuple(x.shape)}"
            )
        size = [int(s) for s in x.shape[2:]]
        padded = self.padded_size(size)
        if padded != size:
            pad: list[int] = []
            for s, p in reversed(list(zip(size, padded))):
                pad += [0, p - s]
            x = F.pad(x, pad)
        out = self.net(x)
        if isinstance(out, (list, tuple)):
            return [self._crop(o, size, padded) for o in out]
        return self._crop(out, size, padded)

    def padded_size(self, size: list[int] | tuple[int, ...]) -> list[int]:
        """The size the network runs at for an input of spatial ``size``: each axis rounded up to
        its divisor, and the last axis grown by one divisor when the coarsest feature map would
        otherwise be a single voxel (instance norm needs more than one)."""
        padded = [max(1, math.ceil(s / d)) * d for s, d in zip(size, self.divisor)]
        if all(p == d for p, d in zip(padded, self.divisor)):
            padded[-1] += self.divisor[-1]
        return padded

    @staticmethod
    def _crop(y: torch.Tensor, size: list[int], padded: list[int]) -> torch.Tensor:
        """Crop ``y`` (at ``padded / scale`` resolution) to the region covering ``size``."""
        target = []
        for s, p, n in zip(size, padded, y.shape[2:]):
            scale = p // int(n)
            target.append(math.ceil(s / scale))
        if list(y.shape[2:]) == target:
            return y
        index = (slice(None), slice(None), *(slice(0, t) for t in target))
        return y[index]
