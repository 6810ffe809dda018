"""Mirror test-time augmentation: a network's output averaged over mirrored inputs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["MirrorTTA"]


class MirrorTTA:
    """Average a network's output over all mirrorings of the given spatial axes (test-time
    augmentation). The mirrored copies of a batch go through the network together
    (``[N * 2^k, C, *roi]``, which keeps small windows efficient), at most ``max_windows``
    windows per call.

    Args:
        network: A runner or module mapping ``[N, C, *roi]`` to logits ``[N, K, *roi]``.
        axes: Spatial axes (0-based, after the channel axis) to mirror.
        max_windows: The most windows per call (``None``: all copies at once).
    """

    def __init__(
        self, network: Callable[[torch.Tensor], Any], axes: Sequence[int], max_windows: int | None = None
    ) -> None:
        self.network = network
        self.axes = list(axes)
        self.max_windows = max_windows

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flips = [
            [a + 2 for a in combo]
            for k in range(len(self.axes) + 1)
            for combo in itertools.combinations(self.axes, k)
        ]
        n = x.shape[0]
        per_call = max(1, (self.max_windows or n * len(flips)) // n)  # mirrored copies per call
        parts = []
        for i in range(0, len(flips), per_call):
            batch = torch.cat([torch.flip(x, dims) if dims else x for dims in flips[i : i + per_call]])
            y = self.network(batch)
            parts.append((y[0] if isinstance(y, list | tuple) else y).float())
        y = parts[0] if len(parts) == 1 else torch.cat(parts)
        out = torch.zeros_like(y[:n])
        for i, dims in enumerate(flips):
            part = y[i * n : (i + 1) * n]
            out += torch.flip(part, dims) if dims else part
        return out / len(flips)

    forward = __call__
