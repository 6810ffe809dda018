"""The training loss of a pipeline: class weights from the data, the registry loss, region targets,
the blob term, deep supervision."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
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


def resolve_class_weights(
    config: PipelineConfig,
    cases: Sequence[Any],
    n_out: int,
    regions: Sequence[RegionConfig] | None,
    labels: Mapping[int, str] | None = None,
) -> list[float] | None:
    """Compute ``loss.class_weighting`` weights from the training cases into ``loss.params``.

    With ``config.loss.class_weighting`` ``median_frequency`` or ``enet``
    (:mod:`medseg.losses.class_weights`), counts the label voxels of ``cases`` (preprocessed
    training cases, labels ``[*spatial]`` as the network sees them, before patch sampling),
    computes one weight per output channel (per class, background included; per region with
    ``regions``, a region counting as the union of its labels), logs them, and sets
    ``config.loss.params["class_weights"]`` to them, so that the run's ``config.yaml`` records
    them. A resumed run (same training split) computes the same weights; a list given in
    ``loss.params`` is replaced, with a warning if it differs.

    Args:
        config: The pipeline (``config.loss.params`` is replaced when weights are computed).
        cases: The training cases (anything with a ``.label`` array or CPU tensor).
        n_out: Output channels of the model (classes incl. background, or regions).
        regions: The pipeline's regions in output-channel order, or None.
        labels: Optional class value -> name, for the log.

    Returns:
        The weights, or None when ``class_weighting`` is ``none``.

    Raises:
        ConfigError: a label value outside the classes, or no training case.
    """
    from medseg.errors import ConfigError
    from medseg.losses.class_weights import class_weights, count_classes

    scheme = config.loss.class_weighting
    if scheme == "none":
        return None
    groups = [list(r.labels) for r in regions] if regions else None
    try:
        arrays = (np.asarray(c.label) for c in cases)
        freq = count_classes(arrays, None if regions else n_out, groups)
    except ValueError as exc:
        raise ConfigError(
            f"loss.class_weighting: {exc}", hint="check the labels of the training cases"
        ) from None
    weights = [float(f"{w:.6g}") for w in class_weights(freq, scheme)]  # as config.yaml records them
    names = (
        [r.name for r in regions] if regions else [(labels or {}).get(k, str(k)) for k in range(len(weights))]
    )
    _log_weights(config, scheme, weights, names, [names[k] for k in freq.absent], len(cases))
    config.loss.params = {**config.loss.params, "class_weights": weights}
    return weights


#: registry losses that accept ``class_weights`` but do not use them
IGNORES_CLASS_WEIGHTS = {"tversky"}


def _log_weights(
    config: PipelineConfig, scheme: str, weights: list[float], names: list[str], absent: list[str], n: int
) -> None:
    """Log the computed weights and warn about absent classes, replaced or unused weights."""
    for name in absent:
        log.warning(
            "loss.class_weighting: %s has no voxel in the %d training cases: its weight is 0 (check the "
            "split and the labels)",
            name,
            n,
        )
    given = config.loss.params.get("class_weights")
    if given is not None and (len(given) != len(weights) or not np.allclose(given, weights, rtol=1e-5)):
        log.warning("loss.class_weighting: %s replaces loss.params.class_weights %s", scheme, given)
    if config.loss.name in IGNORES_CLASS_WEIGHTS:
        log.warning(
            "loss.class_weighting: the %s loss does not use class weights; they are recorded only",
            config.loss.name,
        )
    log.info(
        "class weights (%s, %d training cases): %s",
        scheme,
        n,
        ", ".join(f"{name} {w:.4g}" for name, w in zip(names, weights)),
    )
