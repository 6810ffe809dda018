"""The training loss of a pipeline: the registry loss, region targets, the blob term, deep supervision."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from medseg.config import PipelineConfig
from medseg.config.schema import RegionConfig

log = logging.getLogger(__name__)


def build_training_loss(
    config: PipelineConfig, n_out: int, regions: Sequence[RegionConfig] | None
) -> torch.nn.Module:
    """The loss the trainer optimises, from ``config.loss``.

    Layers, innermost first: the registry loss ``loss.name`` (``loss.params``); with ``regions``,
    :class:`~medseg.losses.region_dice_bce.RegionTargets` (integer labels become region targets
    ``[B, R, *S]``); with ``loss.lesion_weight > 0``, :class:`~medseg.losses.blob.BlobDice`
    (Kofler et al., IPMI 2023), outside the region targets so that it sees integer labels (with
    regions, the lesions are those of the first region); then
    :class:`~medseg.losses.DeepSupervision` (weights ``loss.deep_supervision_weights``), so the
    blob term is applied to each output at its resolution.

    Args:
        config: The pipeline.
        n_out: Output channels of the model (classes incl. background, or regions).
        regions: The pipeline's regions in output-channel order, or None (softmax outputs).

    Returns:
        ``loss(outputs, labels [B, *S]) -> scalar``; ``outputs`` is logits ``[B, C, *S]`` or a
        list of them (deep supervision). Its ``.loss`` is the per-output loss.

    Raises:
        ConfigError: an unknown loss or invalid ``loss.params``.
    """
    from medseg.losses import DeepSupervision, build_loss

    base = build_loss(config.loss.name, n_out, **config.loss.params)
    if regions:  # integer labels become region targets [B, R, *S] under deep supervision
        from medseg.losses.region_dice_bce import RegionTargets

        base = RegionTargets(base, regions)
    weight = config.loss.lesion_weight
    if weight > 0:
        from medseg.losses.blob import BlobDice

        first = list(regions[0].labels) if regions else None
        base = BlobDice(base, weight, regions=bool(regions), region_labels=first)
        log.info("blob loss: lesion-wise Dice term with weight %g", weight)
    return DeepSupervision(base, config.loss.deep_supervision_weights)
