"""``evaluate``: compare a folder of predicted label maps with a folder of references."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from medseg import geometry
from medseg.errors import GeometryMismatchError, MedsegError
from medseg.evaluation.labelmaps import read_labels
from medseg.evaluation.labels import default_name, labels_present, parse_labels
from medseg.evaluation.matching import match_cases
from medseg.evaluation.metrics import ClassMetrics, compute_metrics
from medseg.evaluation.resample import resample_to_grid
from medseg.evaluation.results import EvaluationResult, MetricRow, summarise
from medseg.evaluation.summary import ConfusionMatrix, pair_counts
from medseg.io.formats import is_2d_source
from medseg.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["GRID_TOLERANCE_MM", "Evaluator", "evaluate", "evaluate_case", "spatial_plane"]

#: Largest voxel offset (mm) at which a prediction counts as being on the reference grid.
GRID_TOLERANCE_MM = 1e-3


def spatial_plane(volume: Volume) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The axes a label map is measured on, and their spacing.

    A grid with exactly one axis of length 1 (a 2D image or a single slice) is measured
    in 2D on its other two axes: in 3D every voxel of a single slice would be "surface".
    """
    shape = volume.spatial_shape
    keep = tuple(ax for ax in range(3) if shape[ax] > 1)
    axes = keep if len(keep) == 2 else (0, 1, 2)
    spacing = volume.spacing
    return axes, tuple(spacing[ax] for ax in axes)


def _squeeze(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    if len(axes) == 3:
        return array
    drop = next(ax for ax in range(3) if ax not in axes)
    return np.take(array, 0, axis=drop)


def check_grid(pred: Volume, ref: Volume, pred_path: Path | str, ref_path: Path | str) -> None:
    """Raise :class:`GeometryMismatchError` unless ``pred`` lies on ``ref``'s grid (within 1 µm)."""
    distance = geometry.grid_distance(pred.affine, pred.spatial_shape, ref.affine, ref.spatial_shape)
    if distance <= GRID_TOLERANCE_MM:
        return
    if pred.spatial_shape != ref.spatial_shape:
        detail = f"shape {pred.spatial_shape} vs {ref.spatial_shape}"
    else:
        sp_p = ", ".join(f"{s:.4g}" for s in pred.spacing)
        sp_r = ", ".join(f"{s:.4g}" for s in ref.spacing)
        detail = f"voxels up to {distance:.3g} mm apart (spacing {sp_p} vs {sp_r} mm)"
    raise GeometryMismatchError(
        f"prediction {pred_path} is not on the grid of reference {ref_path}: {detail}",
        hint="pass --resample-pred to resample the prediction onto the reference grid (nearest neighbour)",
    )


def _both_empty_metrics(ndim: int) -> ClassMetrics:
    empty = np.zeros((1,) * ndim, dtype=bool)
    return compute_metrics(empty, empty)


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, ...],
    labels: Iterable[int],
    nsd_tolerance: float = 1.0,
    hd_percentile: float = 95.0,
) -> dict[int, ClassMetrics]:
    """Metrics of each label of one case (integer label arrays on the same 2D/3D grid).

    Each label is measured inside the bounding box of its union in both arrays, which
    leaves every metric unchanged and keeps small structures in large scans cheap.
    """
    from scipy import ndimage

    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    wanted = sorted({int(v) for v in labels})
    top = max(wanted, default=0)
    boxes_p = ndimage.find_objects(pred, max_label=top) if top else []
    boxes_r = ndimage.find_objects(ref, max_label=top) if top else []
    out: dict[int, ClassMetrics] = {}
    for label in wanted:
        bp, br = boxes_p[label - 1], boxes_r[label - 1]
        if bp is None and br is None:
            out[label] = _both_empty_metrics(pred.ndim)
            continue
        if bp is None or br is None:
            box = bp or br
        else:
            box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(bp, br))
        out[label] = compute_metrics(
            pred[box] == label, ref[box] == label, spacing, nsd_tolerance, hd_percentile
        )
    return out


class Evaluator:
    """Evaluation settings as an object (the pipeline form of :func:`evaluate`).

    Args:
        labels: Labels to evaluate (see :func:`~medseg.evaluation.labels.parse_labels`);
            None evaluates every label present in the references.
        nsd_tolerance: Tolerance of the normalised surface Dice, in mm.
        resample_pred: Resample predictions that are not on the reference grid
            (nearest neighbour in world space) instead of refusing them.
        hd_percentile: Percentile of the Hausdorff distance (95: HD95).
    """

    def __init__(
        self,
        labels: str | Path | Mapping[Any, Any] | Iterable[int] | None = None,
        nsd_tolerance: float = 1.0,
        resample_pred: bool = False,
        hd_percentile: float = 95.0,
    ) -> None:
        if not math.isfinite(nsd_tolerance) or nsd_tolerance < 0:
            raise ValueError(f"nsd_tolerance must be a non-negative number of mm, got {nsd_tolerance}")
        if not 0.0 <= hd_percentile <= 100.0:
            raise ValueError(f"hd_percentile must lie in [0, 100], got {hd_percentile}")
        self.labels = parse_labels(labels)
        self.nsd_tolerance = float(nsd_tolerance)
        self.resample_pred = bool(resample_pred)
        self.hd_percentile = float(hd_percentile)

    def __call__(
        self,
        pred_dir: str | Path,
        ref_dir: str | Path,
        output: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> EvaluationResult:
        from medseg.progress import track

        if image_dir is not None and not Path(image_dir).is_dir():
            from medseg.errors import InputNotFoundError

            raise InputNotFoundError(f"image folder {image_dir} does not exist", hint="check --images")
        match = match_cases(pred_dir, ref_dir)
        if match.unmatched_ref:
            log.warning(
                "%d reference cases have no prediction: %s", len(match.unmatched_ref), match.unmatched_ref
            )
        if match.unmatched_pred:
            log.warning(
                "%d predictions have no reference: %s", len(match.unmatched_pred), match.unmatched_pred
            )
        measured = [self._measure(cid, p, r) for cid, p, r in track(match.pairs, "evaluating")]
        dims = {m.ndim for m in measured}
        if len(dims) > 1:
            raise MedsegError(
                f"{ref_dir} mixes 2D and 3D label maps", hint="evaluate 2D images and 3D volumes separately"
            )
        ndim = dims.pop()
        seen = sorted({label for m in measured for label in m.ref_labels})
        labels = self.labels or {label: default_name(label) for label in seen}
        if not labels:
            raise MedsegError(
                f"the references in {ref_dir} hold no foreground label",
                hint="pass --labels to name the labels to evaluate",
            )
        distance_unit = "px" if all(m.unit == "px" for m in measured) else "mm"
        volume_unit = "ml" if ndim == 3 else ("px2" if distance_unit == "px" else "mm2")
        rows = [row for m in measured for row in m.rows(labels)]
        summary = summarise(rows, labels)
        summary["nsd_tolerance_mm"] = self.nsd_tolerance
        summary["unmatched"] = {"pred": match.unmatched_pred, "ref": match.unmatched_ref}
        confusion: ConfusionMatrix | None = None
        if ndim == 2:
            counts: dict[tuple[int, int], int] = {}
            for m in measured:
                for key, n in m.pixel_pairs.items():
                    counts[key] = counts.get(key, 0) + n
            confusion = ConfusionMatrix.from_counts(counts, labels)
            summary["mean_iou"] = confusion.mean_iou()
            summary["mean_iou_with_background"] = confusion.mean_iou(include_background=True)
            summary["confusion_matrix"] = confusion.to_dict()
        from medseg import __version__

        settings = {
            "pred_dir": str(Path(pred_dir).resolve()),
            "ref_dir": str(Path(ref_dir).resolve()),
            "image_dir": str(Path(image_dir).resolve()) if image_dir is not None else None,
            "labels": {str(k): v for k, v in labels.items()},
            "nsd_tolerance_mm": self.nsd_tolerance,
            "hd_percentile": self.hd_percentile,
            "resample_pred": self.resample_pred,
            "spatial_dims": ndim,
            "distance_unit": distance_unit,
            "volume_unit": volume_unit,
            "n_cases": len(measured),
            "medseg_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        result = EvaluationResult(
            rows=rows,
            labels=dict(labels),
            summary=summary,
            settings=settings,
            unmatched_pred=match.unmatched_pred,
            unmatched_ref=match.unmatched_ref,
            confusion=confusion,
        )
        if output is not None:
            result.write(output)
        return result

    def _measure(self, cid: str, pred_path: Path, ref_path: Path) -> _MeasuredCase:
        """Read one pair, put the prediction on the reference grid (or refuse), measure every label."""
        ref = read_labels(ref_path)
        pred = read_labels(pred_path)
        try:
            check_grid(pred, ref, pred_path, ref_path)
        except GeometryMismatchError:
            if not self.resample_pred:
                raise
            log.info("resampling %s onto the grid of %s", pred_path.name, ref_path.name)
            pred = resample_to_grid(pred, ref.affine, ref.spatial_shape, order=0)
        if geometry.is_sheared(ref.affine):
            log.warning("%s has a sheared grid: distances use the axis spacings only", ref_path)
        axes, spacing = spatial_plane(ref)
        p, r = _squeeze(pred.array, axes), _squeeze(ref.array, axes)
        ref_labels = labels_present([r])
        wanted = (
            list(self.labels)
            if self.labels is not None
            else sorted(set(ref_labels) | set(labels_present([p])))
        )
        return _MeasuredCase(
            case=cid,
            pred_path=pred_path,
            ref_path=ref_path,
            metrics=evaluate_case(p, r, spacing, wanted, self.nsd_tolerance, self.hd_percentile),
            ref_labels=ref_labels,
            ndim=len(axes),
            unit="px" if is_2d_source(ref) else "mm",
            pixel_pairs=pair_counts(p, r) if len(axes) == 2 else {},
        )


@dataclass
class _MeasuredCase:
    """Metrics of one case before the label set of the whole evaluation is known."""

    case: str
    pred_path: Path
    ref_path: Path
    metrics: dict[int, ClassMetrics]
    ref_labels: list[int]
    ndim: int
    unit: str
    pixel_pairs: dict[tuple[int, int], int]

    def rows(self, labels: Mapping[int, str]) -> list[MetricRow]:
        """One row per label (labels absent from both masks follow the both-empty convention)."""
        scale = 1e-3 if self.ndim == 3 else 1.0  # mm3 -> ml; 2D areas stay in mm2 (px2)
        out = []
        for label, name in labels.items():
            m = self.metrics.get(label) or _both_empty_metrics(self.ndim)
            out.append(
                MetricRow(
                    case=self.case,
                    class_id=label,
                    class_name=name,
                    dice=m.dice,
                    iou=m.iou,
                    hd95=m.hd95,
                    assd=m.assd,
                    nsd=m.nsd,
                    volume_pred_ml=m.size_pred * scale,
                    volume_ref_ml=m.size_ref * scale,
                    abs_volume_diff_ml=m.abs_size_diff * scale,
                    rel_volume_diff=m.rel_size_diff,
                    pred_path=str(self.pred_path),
                    ref_path=str(self.ref_path),
                )
            )
        return out


def evaluate(
    pred_dir: str | Path,
    ref_dir: str | Path,
    labels: str | Path | Mapping[Any, Any] | Iterable[int] | None = None,
    nsd_tolerance: float = 1.0,
    resample_pred: bool = False,
    output: str | Path | None = None,
    image_dir: str | Path | None = None,
    hd_percentile: float = 95.0,
) -> EvaluationResult:
    """Evaluate every prediction in ``pred_dir`` against the reference with the same case id.

    Args:
        pred_dir: Folder of predicted label maps (NIfTI, NRRD, MHA, PNG, TIFF).
        ref_dir: Folder of reference label maps.
        labels: Labels to evaluate: ``"1:liver,2:spleen"``, a JSON file, a mapping or ids;
            None evaluates every label present in the references (background 0 excluded).
        nsd_tolerance: Tolerance (mm) of the normalised surface Dice.
        resample_pred: Resample predictions onto the reference grid (nearest neighbour in
            world space) instead of refusing predictions on another grid.
        output: Folder to write metrics.csv, summary.json and evaluation.json into.
        image_dir: Folder of the scans (for overlays in reports), recorded in evaluation.json.
        hd_percentile: Percentile of the Hausdorff distance (95 gives HD95).

    Returns:
        The :class:`~medseg.evaluation.results.EvaluationResult`.

    Raises:
        MedsegError: missing folders, no matching case, unreadable files, or a prediction on
            another grid than its reference (:class:`GeometryMismatchError`) without ``resample_pred``.
    """
    evaluator = Evaluator(labels, nsd_tolerance, resample_pred, hd_percentile)
    return evaluator(pred_dir, ref_dir, output=output, image_dir=image_dir)
