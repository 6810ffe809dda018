"""Per-region results inside an evaluation folder (``medseg evaluate --regions SOURCE``).

A region is a union of label values (BraTS: whole tumour {1, 2, 4}, tumour core {1, 4}, enhancing
tumour {4}; :class:`~medseg.config.schema.RegionConfig`). Each region of each case is scored like a
class, between ``np.isin(pred, region.labels)`` and ``np.isin(ref, region.labels)``, with the
metrics and empty-mask conventions of :func:`~medseg.evaluation.metrics.compute_metrics`.

The regions come from (:func:`load_regions`): a run folder (those its ``config.yaml`` records), a
pipeline YAML (its ``regions``, else its manifest's), an MSD / nnU-Net ``dataset.json`` declaring
regions with ``regions_class_order``, a medseg manifest with ``regions``, or a list of regions.

The evaluation folder gains:

* ``metrics.csv``: after the usual columns (and the lesion columns), ``region:<name>:<metric>`` for
  each region and each of :data:`~medseg.evaluation.results.METRIC_COLUMNS`. A region is measured
  once per case, so every class row of a case holds the same region values. Columns keep every row
  a (case, class) row with an integer ``class_id``, which every reader of metrics.csv relies on;
  region rows would need a non-integer ``class_id``.
* ``summary.json``: ``regions``, keyed by region name: ``labels``, ``value``, ``n_cases``, the empty
  counts and ``metrics`` (statistics over cases, as per class);
* ``evaluation.json``: ``regions``, the regions as ``{name, labels, value}``.

With ``--lesions`` too, each region is also scored lesion by lesion (BraTS 2023):
``region:<name>:<lesion column>`` columns, ``summary["regions"][<name>]["lesions"]`` and the
``regions`` of lesions.json (:mod:`~medseg.evaluation.region_lesions`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from medseg.config.schema import RegionConfig, check_region_list
from medseg.errors import ConfigError, InputNotFoundError
from medseg.evaluation.lesion_results import LesionEvaluationResult, lesion_case_values
from medseg.evaluation.lesions import LesionCaseResult
from medseg.evaluation.metrics import DEFAULT_BAND_MM, ClassMetrics, compute_metrics
from medseg.evaluation.region_lesions import (
    region_lesion_columns,
    region_lesion_markdown,
    region_lesions_json,
    region_title,
    summarise_region_lesions,
)
from medseg.evaluation.results import METRIC_COLUMNS, EvaluationResult, MetricRow, format_value, summarise

if TYPE_CHECKING:  # pragma: no cover
    from medseg.config.schema import PipelineConfig
    from medseg.evaluation.workflow import _MeasuredCase

log = logging.getLogger(__name__)

__all__ = [
    "RegionEvaluationResult",
    "RegionLesionEvaluationResult",
    "RegionSource",
    "load_regions",
    "measure_regions",
    "region_column",
    "region_markdown",
    "region_rows",
    "with_regions",
]

#: What ``regions`` of :func:`~medseg.evaluation.evaluate` accepts.
RegionSource = str | Path | Sequence[RegionConfig | Mapping[str, Any]]

_HINT = (
    "give a run folder trained on regions, a pipeline YAML with regions:, or a dataset.json with "
    "regions_class_order"
)


# -- where the regions come from ---------------------------------------------------------------
def load_regions(source: RegionSource | None) -> list[RegionConfig] | None:
    """The regions of ``source``, in their declared order (None for None).

    Args:
        source: A run folder, a pipeline YAML, a dataset.json or medseg manifest, or a list of
            :class:`RegionConfig` (or ``{name, labels, value}`` mappings).

    Raises:
        InputNotFoundError: ``source`` is a path that does not exist.
        ConfigError: it is none of the above, cannot be read, or declares no regions.
    """
    if source is None:
        return None
    if not isinstance(source, (str, Path)):
        try:
            regions = [r if isinstance(r, RegionConfig) else RegionConfig.model_validate(r) for r in source]
            check_region_list(regions, None)
        except (ValidationError, ValueError, TypeError) as exc:
            first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ConfigError(f"invalid regions: {first}", hint="give {name, labels, value} each") from None
        if not regions:
            raise ConfigError("no regions given", hint=_HINT)
        return regions
    path = Path(source)
    if path.is_dir():
        regions = _run_regions(path)
    elif path.is_file():
        regions = _file_regions(path)
    else:
        raise InputNotFoundError(f"no such region source: {path}", hint=_HINT)
    if not regions:
        raise ConfigError(f"{path} declares no regions", hint=_HINT)
    return list(regions)


def _run_regions(folder: Path) -> list[RegionConfig] | None:
    """The regions a run folder's config.yaml records (the trainer writes them there)."""
    from medseg.config.load import load_pipeline

    config = folder / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{folder} is not a run folder (no config.yaml)", hint=_HINT)
    return load_pipeline(config).regions


def _file_regions(path: Path) -> list[RegionConfig] | None:
    """The regions of a pipeline YAML, dataset.json or medseg manifest, told apart by their keys."""
    import yaml

    from medseg.data.manifest import load_manifest
    from medseg.data.regions import regions_from_nnunet

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError, ValueError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise ConfigError(f"cannot read regions from {path}: {message}", hint=_HINT) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds no regions (not a mapping)", hint=_HINT)
    if "model" in data and "data" in data:
        from medseg.config.load import load_pipeline

        return _pipeline_regions(load_pipeline(path))
    if "cases" in data or isinstance(data.get("training"), list):  # a medseg manifest, an MSD dataset.json
        return load_manifest(path).regions
    if isinstance(data.get("labels"), dict) and "regions_class_order" in data:  # nnU-Net v2 dataset.json
        return regions_from_nnunet(data["labels"], data["regions_class_order"], str(path))
    raise ConfigError(f"{path} is neither a pipeline YAML, a dataset.json nor a manifest", hint=_HINT)


def _pipeline_regions(config: PipelineConfig) -> list[RegionConfig] | None:
    """A pipeline's own regions, else its manifest's (the rule of training)."""
    if config.regions:
        return config.regions
    from medseg.data.manifest import load_manifest

    return load_manifest(config.data.manifest).regions


# -- measuring ---------------------------------------------------------------------------------
def measure_regions(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    regions: Sequence[RegionConfig],
    nsd_tolerance: float = 1.0,
    hd_percentile: float = 95.0,
    boundary_band_mm: float = DEFAULT_BAND_MM,
) -> dict[str, ClassMetrics]:
    """Metrics of each region of one case, keyed by region name.

    Args:
        pred: Predicted label map ``[*S]`` (2D or 3D integers).
        ref: Reference label map ``[*S]`` on the same grid.
        spacing: Voxel size in mm per axis of ``[*S]``.
        regions: The regions; a region none of whose labels occurs is empty in both (Dice 1).
        nsd_tolerance: Tolerance of the normalised surface Dice, in mm.
        hd_percentile: Percentile of the Hausdorff distance.
        boundary_band_mm: Band width (mm) of the boundary IoU.

    Each region is measured inside the bounding box of its union in both maps (every metric
    unchanged), as the classes are.
    """
    from scipy import ndimage

    out: dict[str, ClassMetrics] = {}
    for region in regions:
        p, r = np.isin(pred, region.labels), np.isin(ref, region.labels)
        boxes = ndimage.find_objects((p | r).astype(np.uint8))
        if not boxes:
            p = r = np.zeros((1,) * pred.ndim, dtype=bool)
            box: tuple[slice, ...] = (slice(None),) * pred.ndim
        else:
            box = boxes[0]
        out[region.name] = compute_metrics(
            p[box], r[box], spacing, nsd_tolerance, hd_percentile, boundary_band_mm
        )
    return out


def region_rows(
    case: str,
    metrics: Mapping[str, ClassMetrics],
    regions: Sequence[RegionConfig],
    ndim: int,
    paths: tuple[str, str] = ("", ""),
) -> list[MetricRow]:
    """One :class:`MetricRow` per region of a case (``class_id``: the region's position, internal
    only; ``class_name``: its name); volumes in ml in 3D, areas in mm² (px²) in 2D."""
    scale = 1e-3 if ndim == 3 else 1.0
    out = []
    for i, region in enumerate(regions):
        m = metrics[region.name]
        out.append(MetricRow.of(case, i, region.name, m, scale, paths[0], paths[1]))
    return out


def region_column(name: str, metric: str) -> str:
    """The metrics.csv column of ``metric`` of region ``name``: ``region:<name>:<metric>``."""
    return f"region:{name}:{metric}"


def summarise_regions(rows: Sequence[MetricRow], regions: Sequence[RegionConfig]) -> dict[str, Any]:
    """``summary.json``'s ``regions``: per region name its labels, value, case and empty counts and
    the statistics of :data:`~medseg.evaluation.results.SUMMARY_METRICS` over cases."""
    per_index = summarise(list(rows), {i: r.name for i, r in enumerate(regions)})["classes"]
    out: dict[str, Any] = {}
    for i, region in enumerate(regions):
        stats = {k: v for k, v in per_index[str(i)].items() if k != "name"}
        out[region.name] = {"labels": list(region.labels), "value": region.value, **stats}
    return out


# -- results -----------------------------------------------------------------------------------
@dataclass
class RegionEvaluationResult(EvaluationResult):
    """An :class:`EvaluationResult` with per-region results (``medseg evaluate --regions``).

    Attributes:
        regions: The regions, in their declared order.
        region_rows: One row per case and region (see :func:`region_rows`).
    """

    regions: list[RegionConfig] = field(default_factory=list)
    region_rows: list[MetricRow] = field(default_factory=list)

    def metrics_csv(self) -> str:
        """The text of metrics.csv: the columns of the base result, then the region columns."""
        values = {(row.case, row.class_name): row for row in self.region_rows}
        extra = [(r.name, m) for r in self.regions for m in METRIC_COLUMNS]
        lines = list(csv.reader(io.StringIO(super().metrics_csv())))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(lines[0] + [region_column(name, m) for name, m in extra])
        case_at = lines[0].index("case")
        for line in lines[1:]:
            case = line[case_at]
            writer.writerow(line + [format_value(getattr(values[case, name], m)) for name, m in extra])
        return buf.getvalue()

    def to_markdown(self) -> str:
        """The Markdown of the base result, then a table of the regions."""
        return super().to_markdown() + "\n" + region_markdown(self)


@dataclass
class RegionLesionEvaluationResult(RegionEvaluationResult, LesionEvaluationResult):
    """Per-region and lesion-wise results (``--regions`` with ``--lesions``): lesions per class and
    per region (:mod:`~medseg.evaluation.region_lesions`).

    Attributes:
        region_lesion_cases: ``{case: {region name: LesionCaseResult}}``.
    """

    region_lesion_cases: dict[str, dict[str, LesionCaseResult]] = field(default_factory=dict)

    def metrics_csv(self) -> str:
        """The text of metrics.csv: the columns of :class:`RegionEvaluationResult` (class lesion
        columns included), then ``region:<name>:<lesion column>`` per region and lesion column."""
        if not self.region_lesion_cases:
            return super().metrics_csv()
        extra = region_lesion_columns(self.regions, self.lesion_settings)
        values = {
            case: {name: lesion_case_values(res) for name, res in per.items()}
            for case, per in self.region_lesion_cases.items()
        }
        lines = list(csv.reader(io.StringIO(super().metrics_csv())))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(lines[0] + [region_column(name, c) for name, c in extra])
        case_at = lines[0].index("case")
        for line in lines[1:]:
            case = values[line[case_at]]
            writer.writerow(line + [format_value(case[name][c]) for name, c in extra])
        return buf.getvalue()

    def lesions_json(self) -> dict[str, Any]:
        """The content of lesions.json: that of the classes, then ``regions`` (see
        :func:`~medseg.evaluation.region_lesions.region_lesions_json`)."""
        out = super().lesions_json()
        if self.region_lesion_cases:
            out["regions"] = region_lesions_json(self.region_lesion_cases, self.regions)
        return out

    def to_markdown(self) -> str:
        """The Markdown of the classes and regions, then the lesion-wise table of the regions."""
        unit = {"ml": "mm³", "mm2": "mm²", "px2": "px²"}.get(self.volume_unit, "mm³")
        table = region_lesion_markdown(self.summary.get("regions") or {}, self.regions, unit)
        return super().to_markdown() + ("\n" + table if table else "")


def with_regions(
    result: EvaluationResult, measured: Sequence[_MeasuredCase], regions: Sequence[RegionConfig]
) -> RegionEvaluationResult:
    """``result`` with the region metrics of the ``measured`` cases: ``summary["regions"]``,
    ``settings["regions"]`` and the region columns of metrics.csv; with lesion-wise results, also
    those of each region (``summary["regions"][name]["lesions"]`` and the region lesion columns)."""
    rows = [
        row
        for m in measured
        for row in region_rows(m.case, m.region_metrics, regions, m.ndim, (str(m.pred_path), str(m.ref_path)))
    ]
    result.summary["regions"] = summarise_regions(rows, regions)
    result.settings["regions"] = [r.model_dump() for r in regions]
    base = {f.name: getattr(result, f.name) for f in fields(result)}
    if isinstance(result, LesionEvaluationResult):
        lesions = {m.case: m.region_lesions for m in measured}
        if lesions and all(lesions.values()):
            for name, pooled in summarise_region_lesions(lesions, regions).items():
                result.summary["regions"][name]["lesions"] = pooled
        else:  # regions measured without lesion settings: lesions per class only
            lesions = {}
        return RegionLesionEvaluationResult(
            **base, regions=list(regions), region_rows=rows, region_lesion_cases=lesions
        )
    return RegionEvaluationResult(**base, regions=list(regions), region_rows=rows)


def region_markdown(result: RegionEvaluationResult) -> str:
    """Markdown table of ``summary["regions"]``: mean ± sd over cases of every metric per region."""
    from medseg.evaluation.markdown import markdown_table, mean_sd

    stats = result.summary.get("regions") or {}
    tol = result.settings.get("nsd_tolerance_mm", 1.0)
    unit = str(result.settings.get("distance_unit", "mm"))
    vol = {"ml": "(ml)", "mm2": "area (mm²)", "px2": "area (px²)"}.get(result.volume_unit, result.volume_unit)
    header = ["region", "n", "Dice", "IoU", f"HD95 ({unit})", f"ASSD ({unit})", f"NSD@{tol:g}{unit}"]
    header += [f"abs ΔV {vol}", "rel ΔV"]
    body = []
    for region in result.regions:
        m = stats[region.name]["metrics"]
        title = region_title(region.name, region.labels)
        cells = [mean_sd(m["dice"]), mean_sd(m["iou"]), mean_sd(m["hd95"], 2), mean_sd(m["assd"], 2)]
        cells += [mean_sd(m["nsd"]), mean_sd(m["abs_volume_diff_ml"], 2), mean_sd(m["rel_volume_diff"], 3)]
        body.append([title, m["dice"]["n"], *cells])
    note = "- Regions: a region is the union of its labels, in the prediction and in the reference alike.\n"
    return markdown_table(header, body) + "\n" + note
