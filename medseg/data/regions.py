"""Regions: label maps to overlapping region targets and region masks back to a label map.

Region-based training (Isensee et al., nnU-Net, Nature Methods 2021, and its BraTS entries)
learns one sigmoid output per region, a region being a union of label values, e.g.
for BraTS (1 necrosis, 2 oedema, 4 enhancing): whole tumour {1, 2, 4}, tumour core {1, 4},
enhancing tumour {4}. A prediction paints each region's mask with the region's ``value`` in
the declared order, later regions over earlier ones (nnU-Net's ``regions_class_order``):
whole tumour as 2, then core as 1, then enhancing as 4 gives back the BraTS label map.

Each function takes NumPy arrays or torch tensors and returns the same kind.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from medseg.config.schema import RegionConfig, check_region_list
from medseg.errors import ConfigError

log = logging.getLogger(__name__)

_HINT = "list regions as {name, labels: [values], value} (docs/training.md, 'Region-based training')"


def _isin(labels: Any, values: Sequence[int]) -> Any:
    if isinstance(labels, np.ndarray):
        return np.isin(labels, values)
    import torch

    return torch.isin(labels, torch.tensor(list(values), dtype=labels.dtype, device=labels.device))


def regions_to_targets(labels: Any, regions: Sequence[RegionConfig], channel_axis: int = 0) -> Any:
    """Region targets of a label map: channel ``r`` is 1 where the label is one of region ``r``'s.

    Args:
        labels: Integer label map ``[*S]`` (or a batch ``[B, *S]`` with ``channel_axis=1``).
        regions: The regions, in paint order.
        channel_axis: Where the region axis goes (0 for ``[R, *S]``, 1 for ``[B, R, *S]``).

    Returns:
        Float32 targets ``[R, *S]`` (or ``[B, R, *S]``), 0 or 1, as NumPy or torch like ``labels``.
    """
    masks = [_isin(labels, r.labels) for r in regions]
    if isinstance(labels, np.ndarray):
        return np.stack(masks, axis=channel_axis).astype(np.float32)
    import torch

    return torch.stack(masks, dim=channel_axis).float()


def paint(region_masks: Any, regions: Sequence[RegionConfig], dtype: Any = None) -> Any:
    """A label map from region masks, painted in the declared order (later regions win).

    Args:
        region_masks: Boolean masks ``[R, *S]``, one per region, in the order of ``regions``.
        regions: The regions (their ``value`` is painted).
        dtype: Of the label map (default: uint8, or uint16/int16 past 255).

    Returns:
        Label map ``[*S]``: 0 where no region is set.

    Raises:
        ValueError: a number of masks other than the number of regions.
    """
    if region_masks.shape[0] != len(regions):
        raise ValueError(f"{region_masks.shape[0]} region masks for {len(regions)} regions")
    wide = max(r.value for r in regions) > 255
    if isinstance(region_masks, np.ndarray):
        out = np.zeros(region_masks.shape[1:], dtype=dtype or (np.uint16 if wide else np.uint8))
    else:
        import torch

        out = torch.zeros(
            region_masks.shape[1:],
            dtype=dtype or (torch.int16 if wide else torch.uint8),
            device=region_masks.device,
        )
    for mask, region in zip(region_masks, regions):
        out[mask.bool() if not isinstance(mask, np.ndarray) else mask.astype(bool)] = region.value
    return out


def painted_value(label: int, regions: Sequence[RegionConfig]) -> int:
    """The value a voxel of ``label`` gets back after a perfect prediction is painted (0: none)."""
    value = 0
    for r in regions:
        if label in r.labels:
            value = r.value
    return value


def check_regions(regions: Sequence[RegionConfig], labels: Mapping[int, str], source: str) -> None:
    """Check regions against the dataset's labels before training.

    Logs a warning for each label value that a perfect prediction would not paint back as itself
    (e.g. a label in no region, or a region whose value is overwritten for it).

    Raises:
        ConfigError: a region lists a label value that is not a label of the dataset, or two
            regions share a name or a value.
    """
    try:
        check_region_list(list(regions), labels)
    except ValueError as exc:
        raise ConfigError(f"{source}: regions: {exc}", hint=_HINT) from None
    for label in sorted(k for k in labels if k > 0):
        back = painted_value(label, regions)
        if back != label:
            log.warning(
                "regions: label %d (%s) is painted back as %d in a prediction", label, labels[label], back
            )


def regions_from_nnunet(
    labels: Mapping[str, Any], order: Sequence[Any] | None, source: str
) -> list[RegionConfig]:
    """Regions as nnU-Net v2 declares them in ``dataset.json``.

    ``labels`` maps names to a value or a list of values (``{"background": 0, "whole tumor":
    [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}``); every foreground entry is a
    region, in the order listed, and ``regions_class_order`` gives the value each is painted with.

    Raises:
        ConfigError: ``regions_class_order`` is missing or has another length than the regions,
            or a value is not an integer.
    """
    entries = []
    for name, v in labels.items():
        values = list(v) if isinstance(v, (list, tuple)) else [v]
        if values != [0] and str(values[0]).strip() != "0":  # background is no region
            entries.append((str(name), [as_label_value(x, source) for x in values]))
    if not isinstance(order, (list, tuple)):
        raise ConfigError(
            f"{source}: labels declare regions (lists of values) but no regions_class_order list",
            hint="add regions_class_order: the value each region is painted with, in order (nnU-Net v2)",
        )
    if len(order) != len(entries):
        raise ConfigError(
            f"{source}: regions_class_order has {len(order)} values for {len(entries)} regions",
            hint="give one painted value per foreground entry of labels, in the same order",
        )
    try:
        return [
            RegionConfig(name=name, labels=values, value=as_label_value(v, source))
            for (name, values), v in zip(entries, order)
        ]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{source}: invalid region ({first['msg']})", hint=_HINT) from None


def as_label_value(value: Any, source: str) -> int:
    """``value`` as a label value (``3`` or ``"3"``).

    Raises:
        ConfigError: anything else (negative, fractional, not a number).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, str))
        or not str(value).strip().isdigit()
    ):
        raise ConfigError(f"{source}: label value {value!r} is not an integer >= 0", hint=_HINT)
    return int(str(value).strip())
