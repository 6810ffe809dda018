"""Losses by registry name: Dice + focal (default), Dice + CE, focal, (weighted) CE, Tversky.

Built on MONAI's implementations. Every loss takes raw logits ``[B, C, *spatial]`` and
integer labels ``[B, *spatial]`` (or ``[B, 1, *spatial]``). Deep supervision wraps
any of them (:class:`DeepSupervision`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medseg.errors import ConfigError


class LossName(str, Enum):
    DICE_FOCAL = "dice_focal"
    DICE_CE = "dice_ce"
    FOCAL = "focal"
    CE = "ce"
    TVERSKY = "tversky"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    class_weights: list[float] | None = Field(None, description="one weight per class (incl. background)")
    include_background: bool = Field(False, description="Dice/Tversky over the background class too")
    batch_dice: bool = Field(True, description="Dice over the whole batch (nnU-Net) instead of per sample")


class DiceFocalParams(_Params):
    gamma: float = Field(2.0, ge=0, description="focal gamma")
    lambda_dice: float = Field(1.0, ge=0)
    lambda_focal: float = Field(1.0, ge=0)


class DiceCEParams(_Params):
    lambda_dice: float = Field(1.0, ge=0)
    lambda_ce: float = Field(1.0, ge=0)


class FocalParams(_Params):
    gamma: float = Field(2.0, ge=0)


class TverskyParams(_Params):
    alpha: float = Field(0.3, ge=0, le=1, description="weight of false positives")
    beta: float = Field(0.7, ge=0, le=1, description="weight of false negatives")


_PARAMS: dict[LossName, type[_Params]] = {
    LossName.DICE_FOCAL: DiceFocalParams,
    LossName.DICE_CE: DiceCEParams,
    LossName.FOCAL: FocalParams,
    LossName.CE: _Params,
    LossName.TVERSKY: TverskyParams,
}


class _LabelsAsChannel(torch.nn.Module):
    """Adapts ``[B, *spatial]`` integer labels to MONAI's ``[B, 1, *spatial]``."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == logits.ndim - 1:
            labels = labels[:, None]
        return self.loss(logits, labels.long())


class _CrossEntropy(torch.nn.Module):
    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim == logits.ndim:
            labels = labels[:, 0]
        return torch.nn.functional.cross_entropy(logits, labels.long(), weight=self.weight)


def build_loss(name: str, n_classes: int, **params: Any) -> torch.nn.Module:
    """Build a loss by registry name.

    Raises:
        ConfigError: unknown name or parameter, or class weights of the wrong length.
    """
    from monai.losses import DiceCELoss, DiceFocalLoss, FocalLoss, TverskyLoss

    try:
        key = LossName(name)
    except ValueError:
        raise ConfigError(
            f"unknown loss {name!r}", hint=f"use one of: {', '.join(n.value for n in LossName)}"
        ) from None
    try:
        p = _PARAMS[key].model_validate(params)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"bad parameters for loss {name}: {bad}",
            hint=f"valid parameters: {', '.join(_PARAMS[key].model_fields)}",
        ) from None
    weight = None
    if p.class_weights is not None:
        if len(p.class_weights) != n_classes:
            raise ConfigError(f"loss class_weights has {len(p.class_weights)} values for {n_classes} classes")
        weight = torch.tensor(p.class_weights, dtype=torch.float32)
    common = {
        "include_background": p.include_background,
        "to_onehot_y": True,
        "softmax": True,
        "batch": p.batch_dice,
    }
    fg_weight = weight if p.include_background or weight is None else weight[1:]
    if key is LossName.DICE_FOCAL:
        loss = DiceFocalLoss(
            **common,
            gamma=p.gamma,
            lambda_dice=p.lambda_dice,  # type: ignore[attr-defined]
            lambda_focal=p.lambda_focal,
            weight=fg_weight,
        )
    elif key is LossName.DICE_CE:
        loss = DiceCELoss(
            **common,
            lambda_dice=p.lambda_dice,
            lambda_ce=p.lambda_ce,  # type: ignore[attr-defined]
            weight=weight,
        )
    elif key is LossName.FOCAL:
        loss = FocalLoss(
            include_background=p.include_background,
            to_onehot_y=True,
            gamma=p.gamma,  # type: ignore[attr-defined]
            weight=fg_weight,
            use_softmax=True,
        )
    elif key is LossName.TVERSKY:
        loss = TverskyLoss(**common, alpha=p.alpha, beta=p.beta)  # type: ignore[attr-defined]
    else:
        return _CrossEntropy(weight)
    return _LabelsAsChannel(loss)


class DeepSupervision(torch.nn.Module):
    """Apply ``loss`` to every output of a deep-supervised model, labels downsampled (nearest)
    to each output's size, weighted (default: halving per level, normalised to sum 1)."""

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
