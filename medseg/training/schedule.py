"""Learning-rate schedules as multipliers of the base rate, per iteration."""

from __future__ import annotations

import math


def poly(iteration: int, total: int, exponent: float = 0.9) -> float:
    """nnU-Net's poly schedule: ``(1 - it / total) ** 0.9``."""
    return max(0.0, 1.0 - min(iteration, total) / max(total, 1)) ** exponent


def cosine_warmup(iteration: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` iterations, then cosine decay to 0 at ``total``."""
    if warmup > 0 and iteration < warmup:
        return (iteration + 1) / warmup
    progress = (iteration - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def lr_factor(schedule: str, iteration: int, total: int, warmup: int = 0) -> float:
    """The multiplier of the base learning rate at ``iteration`` of ``total``."""
    if schedule == "poly":
        return poly(iteration, total)
    if schedule == "cosine":
        return cosine_warmup(iteration, total, warmup)
    raise ValueError(f"unknown schedule {schedule!r}")
