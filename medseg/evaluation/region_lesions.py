"""Lesion-wise results per region (``medseg evaluate --lesions --regions SOURCE``).

BraTS 2023 scores the lesion-wise Dice and HD95 per region (whole tumour, tumour core, enhancing
tumour), not per label. With both ``--lesions`` and ``--regions``, every region of every case is
therefore also evaluated with :func:`~medseg.evaluation.lesions.evaluate_lesions`, between
``np.isin(pred, region.labels)`` and ``np.isin(ref, region.labels)``, with the spacing and the
:class:`~medseg.evaluation.lesions.LesionSettings` of the classes. The evaluation folder gains:

* ``metrics.csv``: after the region columns, ``region:<name>:<lesion column>`` for each region and
  each of :func:`~medseg.evaluation.lesion_results.lesion_columns` (``region:whole_tumor:lesion_dice``,
  ...); a region is evaluated once per case, so every class row of a case holds the same values;
* ``summary.json``: ``regions[<name>]["lesions"]``, the pooled
  :class:`~medseg.evaluation.lesions.LesionSummary` of the region (the shape of a class's entry of
  ``summary["lesions"]``, with ``froc`` None: the FROC stays per class);
* ``lesions.json``: ``regions``, shaped like the per-class part: ``labels`` (region name -> label
  values) and ``cases`` (case -> region name -> per-lesion table).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.schema import RegionConfig
from medseg.errors import CorruptFileError
from medseg.evaluation.lesion_results import (
    LESION_BASE_COLUMNS,
    lesion_columns,
    lesion_table_markdown,
)
from medseg.evaluation.lesions import LesionCaseResult, LesionSettings, LesionSummary, evaluate_lesions

__all__ = [
    "measure_region_lesions",
    "read_region_lesion_values",
    "region_lesion_columns",
    "region_lesion_markdown",
    "region_lesions_json",
    "region_title",
    "summarise_region_lesions",
]

_PREFIX = "region:"


def region_title(name: str, labels: Sequence[int]) -> str:
    """How tables name a region: ``"whole_tumor {1, 2, 4}"``."""
    return f"{name} {{{', '.join(str(v) for v in labels)}}}"


def measure_region_lesions(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    regions: Sequence[RegionConfig],
    settings: LesionSettings,
) -> dict[str, LesionCaseResult]:
    """Lesion-wise results of each region of one case, keyed by region name (BraTS 2023).

    Args:
        pred: Predicted label map ``[*S]`` (2D or 3D integers).
        ref: Reference label map ``[*S]`` on the same grid.
        spacing: Voxel size in mm per axis of ``[*S]``.
        regions: The regions; a region none of whose labels occurs has no lesion and no
            component (lesion-wise Dice 1, HD95 0 mm).
        settings: How lesions are found, matched and counted (those of the classes).

    Raises:
        ValueError: ``pred`` and ``ref`` differ in shape (from :func:`evaluate_lesions`).
    """
    return {
        r.name: evaluate_lesions(np.isin(pred, r.labels), np.isin(ref, r.labels), spacing, settings)
        for r in regions
    }


def summarise_region_lesions(
    cases: Mapping[str, Mapping[str, LesionCaseResult]], regions: Sequence[RegionConfig]
) -> dict[str, dict[str, Any]]:
    """Per region name, ``{"name": name, **LesionSummary.to_dict()}`` pooled over ``cases``
    (``{case: {region name: LesionCaseResult}}``); ``froc`` is None.

    Raises:
        ConfigError: no case (from :meth:`LesionSummary.from_cases`).
    """
    return {
        r.name: {"name": r.name, **LesionSummary.from_cases([c[r.name] for c in cases.values()]).to_dict()}
        for r in regions
    }


def region_lesion_columns(regions: Sequence[RegionConfig], settings: LesionSettings) -> list[tuple[str, str]]:
    """``(region name, lesion column)`` of each region lesion column of metrics.csv, in order: per
    region (declared order), every column of :func:`lesion_columns`. The header is
    ``region:<name>:<lesion column>``."""
    return [(r.name, c) for r in regions for c in lesion_columns(settings)]


def region_lesions_json(
    cases: Mapping[str, Mapping[str, LesionCaseResult]], regions: Sequence[RegionConfig]
) -> dict[str, Any]:
    """lesions.json's ``regions``: ``labels`` (region name -> label values) and ``cases`` (case ->
    region name -> :meth:`LesionCaseResult.to_dict`), the shape of its per-class part."""
    return {
        "labels": {r.name: list(r.labels) for r in regions},
        "cases": {case: {name: res.to_dict() for name, res in per.items()} for case, per in cases.items()},
    }


def region_lesion_markdown(
    summary_regions: Mapping[str, Any], regions: Sequence[RegionConfig], volume_unit: str = "mm³"
) -> str:
    """Markdown table of the regions' ``lesions`` in ``summary["regions"]``, one row per region
    (the class table of :func:`~medseg.evaluation.lesion_results.lesion_table_markdown`); ""
    when no region has lesion results."""
    entries = [
        (region_title(r.name, r.labels), summary_regions[r.name]["lesions"])
        for r in regions
        if (summary_regions.get(r.name) or {}).get("lesions")
    ]
    return lesion_table_markdown(entries, volume_unit, key="region")


def read_region_lesion_values(folder: str | Path) -> dict[tuple[str, str], dict[str, float]]:
    """The region lesion columns of an evaluation folder's metrics.csv:
    ``{(case, region name): {lesion column: value}}`` (empty when there are none).

    Raises:
        CorruptFileError: a metrics.csv that cannot be read.
    """
    path = Path(folder) / "metrics.csv"
    out: dict[tuple[str, str], dict[str, float]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = {}
            for header in reader.fieldnames or []:
                if header.startswith(_PREFIX):
                    name, column = header[len(_PREFIX) :].rsplit(":", 1)
                    if column in LESION_BASE_COLUMNS or column.startswith("lesion_"):
                        columns[header] = (name, column)
            for rec in reader:
                for header, (name, column) in columns.items():
                    value = float(rec[header]) if rec[header] != "" else math.nan
                    out.setdefault((rec["case"], name), {})[column] = value
    except (OSError, UnicodeDecodeError, ValueError, KeyError, csv.Error) as exc:
        raise CorruptFileError(f"cannot read {path}: {exc}", hint="re-run medseg evaluate") from exc
    return out
