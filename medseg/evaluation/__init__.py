"""Evaluation of segmentations: overlap, boundary and volume metrics in physical units.

* :mod:`~medseg.evaluation.metrics`: Dice, IoU, HD95, ASSD, normalised surface Dice and
  volume differences of binary masks with anisotropic spacing (MONAI's conventions).
* :mod:`~medseg.evaluation.workflow`: :func:`evaluate` over folders of label maps,
  matched by case id, with per-case rows and summary statistics.
* :mod:`~medseg.evaluation.results`: the evaluation folder (metrics.csv, summary.json,
  evaluation.json) and :func:`load_evaluation`.

This package draws nothing; pictures and reports live in :mod:`medseg.reporting`.
"""

from __future__ import annotations

from medseg.evaluation.labels import parse_labels
from medseg.evaluation.matching import CaseMatch, case_id, list_cases, match_cases
from medseg.evaluation.metrics import (
    ClassMetrics,
    SegmentationMetrics,
    SurfaceDistances,
    assd,
    compute_metrics,
    dice,
    hausdorff95,
    hausdorff_distance,
    iou,
    normalized_surface_dice,
    surface_voxels,
    volume_difference,
    volume_mm,
)
from medseg.evaluation.results import CSV_COLUMNS, EvaluationResult, MetricRow, load_evaluation
from medseg.evaluation.summary import ConfusionMatrix, describe
from medseg.evaluation.workflow import Evaluator, evaluate, evaluate_case

__all__ = [
    "CSV_COLUMNS",
    "CaseMatch",
    "ClassMetrics",
    "ConfusionMatrix",
    "EvaluationResult",
    "Evaluator",
    "MetricRow",
    "SegmentationMetrics",
    "SurfaceDistances",
    "assd",
    "case_id",
    "compute_metrics",
    "describe",
    "dice",
    "evaluate",
    "evaluate_case",
    "hausdorff95",
    "hausdorff_distance",
    "iou",
    "list_cases",
    "load_evaluation",
    "match_cases",
    "normalized_surface_dice",
    "parse_labels",
    "surface_voxels",
    "volume_difference",
    "volume_mm",
]
