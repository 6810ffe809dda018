"""The loss registry: an explicit table of every loss medseg can train with, by name.

Pipelines name a loss by its registry key (``loss.name: dice_focal``) and pass its
parameters (``loss.params``). To add a loss, write its module (a parameter model
deriving :class:`~medseg.losses.base.LossParams` and a builder) and add one
:class:`LossSpec` to :data:`LOSSES`; the contract test (``tests/losses/test_contract.py``)
checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import ValidationError

from medseg.config.suggest import unknown_choice, unknown_keys
from medseg.errors import ConfigError
from medseg.losses.base import LossParams, class_weight_tensor
from medseg.losses.ce import CEParams, build_ce
from medseg.losses.dice_ce import DiceCEParams, build_dice_ce
from medseg.losses.dice_focal import DiceFocalParams, build_dice_focal
from medseg.losses.focal import FocalParams, build_focal
from medseg.losses.region_dice_bce import RegionDiceBCEParams, build_region_dice_bce
from medseg.losses.tversky import TverskyParams, build_tversky

#: ``builder(params, class_weights [C] or None) -> loss(logits [B, C, *spatial], labels [B, *spatial])``.
LossBuilder = Callable[[Any, torch.Tensor | None], torch.nn.Module]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    Attributes:
        name: registry key used in pipeline configs (``loss.name``).
        description: one line.
        paper: the reference it follows.
        params_model: the pydantic model validating ``loss.params`` (unknown keys rejected).
        builder: ``builder(params, class_weights) -> nn.Module`` taking logits ``[B, C, *spatial]``
            and integer labels ``[B, *spatial]``, returning a scalar.
        perfect_zero: whether the loss is 0 at a perfect one-hot prediction (checked by the
            contract test).
        regions: whether it is a region loss (sigmoid outputs, one per region, the pipeline's
            ``regions``): pipelines with regions need one, pipelines without refuse it.
    """

    name: str
    description: str
    paper: str
    params_model: type[LossParams]
    builder: LossBuilder = field(repr=False)
    perfect_zero: bool = True
    regions: bool = False


_DICE = "Milletari, Navab, Ahmadi: V-Net (soft Dice loss), 3DV 2016"
_FOCAL = "Lin, Goyal, Girshick, He, Dollár: Focal Loss for Dense Object Detection, ICCV 2017"

#: Every registered loss, by registry name.
LOSSES: dict[str, LossSpec] = {
    "dice_focal": LossSpec(
        name="dice_focal",
        description="soft Dice + focal loss (the default)",
        paper=f"{_DICE}; {_FOCAL}",
        params_model=DiceFocalParams,
        builder=build_dice_focal,
    ),
    "dice_ce": LossSpec(
        name="dice_ce",
        description="soft Dice + (class-weighted) cross-entropy, as nnU-Net",
        paper=f"{_DICE}; Isensee et al.: nnU-Net, Nature Methods 2021",
        params_model=DiceCEParams,
        builder=build_dice_ce,
    ),
    "focal": LossSpec(
        name="focal",
        description="focal loss: cross-entropy down-weighting well-classified voxels",
        paper=_FOCAL,
        params_model=FocalParams,
        builder=build_focal,
    ),
    "ce": LossSpec(
        name="ce",
        description="(class-weighted) cross-entropy",
        paper="cross-entropy (maximum likelihood)",
        params_model=CEParams,
        builder=build_ce,
    ),
    "tversky": LossSpec(
        name="tversky",
        description="Tversky loss: Dice with separate weights of false positives and false negatives",
        paper="Salehi, Erdogmus, Gholipour: Tversky loss function for image segmentation using 3D fully "
        "convolutional deep networks, MLMI 2017",
        params_model=TverskyParams,
        builder=build_tversky,
    ),
    "region_dice_bce": LossSpec(
        name="region_dice_bce",
        description="region-based training: soft Dice + binary cross-entropy of sigmoid outputs, "
        "one per region",
        paper=f"{_DICE}; Isensee et al.: nnU-Net (region-based training), Nature Methods 2021",
        params_model=RegionDiceBCEParams,
        builder=build_region_dice_bce,
        regions=True,
    ),
}


def get_loss_spec(name: str) -> LossSpec:
    """The :class:`LossSpec` registered as ``name``.

    Raises:
        ConfigError: an unknown name (listing the valid ones, suggesting the closest).
    """
    spec = LOSSES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise unknown_choice("loss.name", name, LOSSES)
    return spec


def validate_loss_params(name: str, params: Mapping[str, Any] | None = None) -> LossParams:
    """Validate ``loss.params`` of loss ``name`` (defaults filled in).

    Raises:
        ConfigError: unknown name, unknown key (suggesting the closest) or invalid value.
    """
    spec = get_loss_spec(name)
    try:
        return spec.params_model.model_validate(dict(params or {}))
    except ValidationError as exc:
        valid = list(spec.params_model.model_fields)
        bad = unknown_keys(exc)
        if bad:
            raise unknown_choice("loss.params", bad[0], valid) from None
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"bad loss.params for loss {name!r}: {problems}",
            hint=f"valid keys: {', '.join(valid)}",
        ) from None


def build_loss(name: str, n_classes: int, **params: Any) -> torch.nn.Module:
    """Build a loss by registry name.

    Args:
        name: A key of :data:`LOSSES`.
        n_classes: Classes ``C`` of the logits, background included.
        **params: ``loss.params`` (see each loss's parameter model).

    Returns:
        ``loss(logits [B, C, *spatial], labels [B, *spatial] or [B, 1, *spatial]) -> scalar``.

    Raises:
        ConfigError: unknown name or parameter, or class weights of the wrong length.
    """
    p = validate_loss_params(name, params)
    return LOSSES[name].builder(p, class_weight_tensor(p, n_classes))
