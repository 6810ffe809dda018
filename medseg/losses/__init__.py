"""Losses by registry name (:data:`LOSSES`): Dice + focal (default), Dice + CE, focal, (weighted) CE,
Tversky; one module each, built on MONAI's implementations.

Every loss takes raw logits ``[B, C, *spatial]`` and integer labels ``[B, *spatial]`` (or
``[B, 1, *spatial]``). Deep supervision wraps any of them (:class:`DeepSupervision`).
"""

from __future__ import annotations

from medseg.losses.base import DeepSupervision, LossParams
from medseg.losses.registry import LOSSES, LossSpec, build_loss, get_loss_spec, validate_loss_params

__all__ = [
    "LOSSES",
    "DeepSupervision",
    "LossParams",
    "LossSpec",
    "build_loss",
    "get_loss_spec",
    "validate_loss_params",
]
