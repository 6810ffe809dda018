"""What every loss shares: the common parameters, class weights, the label adapter, deep supervision.

Every loss takes raw logits ``[B, C, *spatial]`` and integer labels ``[B, *spatial]``
(or ``[B, 1, *spatial]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from medseg.errors import ConfigError


class LossParams(BaseModel):
    """Parameters every loss accepts; each loss's model adds its own (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")

    class_weights: list[float] | None = Field(None, description="one weight per class (incl. background)")
    include_background: bool = Field(False, description="Dice/Tversky over the background class too")
    batch_dice: bool = Field(True, description="Dice over the whole batch (nnU-Net) instead of per sample")


def class_weight_tensor(params: LossParams, n_classes: int) -> torch.Tensor | None:
    """``params.class_weights`` as a float tensor ``[n_classes]`` (None when not given).

    Raises:
        ConfigError: a number of weights other than ``n_classes``.
    """
    if params.class_weights is None:
        return None
    if len(params.class_weights) != n_classes:
        raise ConfigError(
            f"loss class_weights has {len(params.class_weights)} values for {n_classes} classes",
            hint="give one weight per class, background included",
        )
    return torch.tensor(params.class_weights, dtype=torch.float32)


def foreground_weight(weight: torch.Tensor | None, include_background: bool) -> torch.Tensor | None:
    """The weights of the classes a region loss sees (background dropped unless included)."""
    if weight is None or include_background:
        return weight
    return weight[1:]


def region_kwargs(params: LossParams) -> dict[str, Any]:
    """Arguments MONAI's region losses (Dice, Tversky and their compounds) share."""
    return {
        "include_background": params.include_background,
        "to_onehot_y": True,
        "softmax": True,
        "batch": params.batch_dice,
    }


class LabelsAsChannel(torch.nn.Module):
    """Adapts integer labels ``[B, *spatial]`` to MONAI's ``[B, 1, *spatial]`` (long)."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == logits.ndim - 1:
            labels = labels[:, None]
        return self.loss(logits, labels.long())


class DeepSupervision(torch.nn.Module):
    """Apply ``loss`` to every output of a deep-supervised model (nnU-Net, Isensee et al. 2021).

    Labels are downsampled (nearest) to each output's size; the outputs are weighted (default:
    halving per level), the weights normalised to sum 1. A single tensor is passed straight through.

    Args:
        loss: ``loss(logits [B, C, *spatial], labels [B, *spatial]) -> scalar``.
        weights: One weight per output, full resolution first.

    Raises:
        ValueError: (at call) fewer weights than outputs.
    """

    def __init__(self, loss: Callable[..., torch.Tensor], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = list(weights) if weights is not None else None

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, labels)
        weights = self.weights or [0.5**i for i in range(len(outputs))]
        if len(weights) < len(outputs):
            raise ValueError(f"{len(outputs)} outputs but {len(weights)} deep-supervision weights")
        weights = [w / sum(weights[: len(outputs)]) for w in weights[: len(outputs)]]
        total = outputs[0].new_zeros(())
        lab = labels if labels.ndim == outputs[0].ndim else labels[:, None]
        for w, out in zip(weights, outputs):
            if w == 0:
                continue
            target = lab
            if out.shape[2:] != lab.shape[2:]:
                target = torch.nn.functional.interpolate(
                    lab.float(), size=out.shape[2:], mode="nearest"
                ).long()
            total = total + w * self.loss(out, target[:, 0])
        return total
