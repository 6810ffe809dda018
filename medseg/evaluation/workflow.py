"""``evaluate``: compare a folder of predicted label maps with a folder of references."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg import geometry
from medseg.errors import ConfigError, GeometryMismatchError, MedsegError
from medseg.evaluation.boundary import (
    DEFAULT_DISTANCE_BINS_MM,
    DistanceErrors,
    check_bins,
    measure_labels,
    pooled_errors_json,
)
from medseg.evaluation.grid import GRID_TOLERANCE_MM, check_grid, label_boxes, spatial_plane, squeeze_plane
from medseg.evaluation.labelmaps import read_labels
from medseg.evaluation.labels import default_name, labels_present, parse_labels
from medseg.evaluation.matching import CaseMatch, match_cases
from medseg.evaluation.metrics import DEFAULT_BAND_MM, ClassMetrics, compute_metrics
from medseg.evaluation.region_lesions import measure_region_lesions
from medseg.evaluation.regions_eval import RegionSource, load_regions, measure_regions, with_regions
from medseg.evaluation.resample import resample_to_grid
from medseg.evaluation.results import EvaluationResult, MetricRow, summarise
from medseg.evaluation.summary import ConfusionMatrix, pair_counts
from medseg.io.formats import is_2d_source
from medseg.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from medseg.evaluation.froc import FrocCase
    from medseg.evaluation.lesions import LesionCaseResult, LesionSettings

log = logging.getLogger(__name__)

__all__ = ["GRID_TOLERANCE_MM", "Evaluator", "evaluate", "evaluate_case", "spatial_plane"]


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
    boundary_band_mm: float = DEFAULT_BAND_MM,
) -> dict[int, ClassMetrics]:
    """Metrics of each label of one case (integer label arrays ``[*S]`` on the same 2D/3D grid,
    ``spacing`` in mm; ``boundary_band_mm``: band of the boundary IoU).

    Each label is measured inside the bounding box of its union in both arrays
    (:func:`~medseg.evaluation.grid.label_boxes`), which leaves every metric unchanged.
    """
    wanted = sorted({int(v) for v in labels})
    out: dict[int, ClassMetrics] = {}
    for label, box in label_boxes(pred, ref, wanted).items():
        if box is None:
            out[label] = _both_empty_metrics(pred.ndim)
            continue
        out[label] = compute_metrics(
            pred[box] == label, ref[box] == label, spacing, nsd_tolerance, hd_percentile, boundary_band_mm
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
        lesions: Lesion-wise evaluation of every class (BraTS 2023 lesion-wise Dice and HD95,
            detection, size strata; see :mod:`~medseg.evaluation.lesions`): its
            :class:`~medseg.evaluation.lesions.LesionSettings`, True for the defaults, or None.
        probabilities: Folder of probability maps (``<case>_probabilities.nii.gz`` of
            ``medseg predict --probabilities``: ``[X, Y, Z, K]``, channel k for label k) for the
            FROC of each class; needs ``lesions``.
        froc_threshold: Probability at which FROC candidates are extracted, in (0, 1].
        regions: Also score these regions (:func:`~medseg.evaluation.regions_eval.load_regions`),
            with ``lesions`` lesion-wise too (:mod:`~medseg.evaluation.region_lesions`).
        boundary_band_mm: Band width (mm) of the boundary IoU (:mod:`~medseg.evaluation.boundary`).
        distance_bins_mm: Bin edges (mm) of the error rate against the distance to the reference
            boundary (boundary_error.json); None leaves it out.

    Raises:
        ConfigError: ``probabilities`` without ``lesions``, a ``froc_threshold`` outside (0, 1], a band
            that is not > 0 mm, or bin edges that are not increasing values >= 0.
    """

    def __init__(
        self,
        labels: str | Path | Mapping[Any, Any] | Iterable[int] | None = None,
        nsd_tolerance: float = 1.0,
        resample_pred: bool = False,
        hd_percentile: float = 95.0,
        lesions: LesionSettings | bool | None = None,
        probabilities: str | Path | None = None,
        froc_threshold: float = 0.1,
        regions: RegionSource | None = None,
        boundary_band_mm: float = DEFAULT_BAND_MM,
        distance_bins_mm: Sequence[float] | None = DEFAULT_DISTANCE_BINS_MM,
    ) -> None:
        if not math.isfinite(boundary_band_mm) or boundary_band_mm <= 0:
            raise ConfigError(f"the boundary IoU band must be > 0 mm, got {boundary_band_mm}", hint="e.g. 2")
        self.boundary_band_mm = float(boundary_band_mm)
        self.distance_bins = None if distance_bins_mm is None else check_bins(distance_bins_mm)
        if not math.isfinite(nsd_tolerance) or nsd_tolerance < 0:
            raise ValueError(f"nsd_tolerance must be a non-negative number of mm, got {nsd_tolerance}")
        if not 0.0 <= hd_percentile <= 100.0:
            raise ValueError(f"hd_percentile must lie in [0, 100], got {hd_percentile}")
        self.labels = parse_labels(labels)
        self.nsd_tolerance = float(nsd_tolerance)
        self.resample_pred = bool(resample_pred)
        self.hd_percentile = float(hd_percentile)
        from medseg.evaluation.lesion_results import as_lesion_settings

        self.lesions = as_lesion_settings(lesions)
        self.regions = load_regions(regions)
        if probabilities is not None and self.lesions is None:
            raise ConfigError(
                "probability maps are only used by the lesion-wise evaluation", hint="add --lesions"
            )
        if not 0.0 < froc_threshold <= 1.0:
            raise ConfigError(
                f"the FROC candidate threshold must lie in (0, 1], got {froc_threshold}", hint="e.g. 0.1"
            )
        self.probabilities = Path(probabilities) if probabilities is not None else None
        self.froc_threshold = float(froc_threshold)

    def __call__(
        self,
        pred_dir: str | Path,
        ref_dir: str | Path,
        output: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> EvaluationResult:
        if image_dir is not None and not Path(image_dir).is_dir():
            from medseg.errors import InputNotFoundError

            raise InputNotFoundError(f"image folder {image_dir} does not exist", hint="check --images")
        match, measured = self._measure_all(pred_dir, ref_dir)
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
        summary = summarise(rows, labels, volume_unit)
        summary["nsd_tolerance_mm"] = self.nsd_tolerance
        summary["boundary_band_mm"] = self.boundary_band_mm
        summary["unmatched"] = {"pred": match.unmatched_pred, "ref": match.unmatched_ref}
        confusion = _pooled_confusion(measured, labels, summary) if ndim == 2 else None
        settings = {
            "pred_dir": str(Path(pred_dir).resolve()),
            "ref_dir": str(Path(ref_dir).resolve()),
            "image_dir": str(Path(image_dir).resolve()) if image_dir is not None else None,
            "labels": {str(k): v for k, v in labels.items()},
            **self._record(ndim, distance_unit, volume_unit, len(measured)),
        }
        result = EvaluationResult(
            rows=rows,
            labels=dict(labels),
            summary=summary,
            settings=settings,
            unmatched_pred=match.unmatched_pred,
            unmatched_ref=match.unmatched_ref,
            confusion=confusion,
            boundary_error=self._boundary_error(measured, labels, distance_unit),
        )
        if self.lesions is not None:
            result = self._with_lesions(result, measured, self.lesions)
        if self.regions:
            result = with_regions(result, measured, self.regions)
        if output is not None:
            result.write(output)
        return result

    def _boundary_error(
        self, measured: list[_MeasuredCase], labels: Mapping[int, str], distance_unit: str
    ) -> dict[str, Any] | None:
        """The content of boundary_error.json (counts pooled over cases), or None without bins."""
        if self.distance_bins is None:
            return None
        return pooled_errors_json(
            (m.distance_errors for m in measured), labels, self.distance_bins, distance_unit
        )

    def _record(self, ndim: int, distance_unit: str, volume_unit: str, n_cases: int) -> dict[str, Any]:
        """The settings of evaluation.json after the folders and labels, in their order."""
        from medseg import __version__

        return {
            "nsd_tolerance_mm": self.nsd_tolerance,
            "hd_percentile": self.hd_percentile,
            "boundary_band_mm": self.boundary_band_mm,
            "distance_bins_mm": None if self.distance_bins is None else self.distance_bins.tolist(),
            "resample_pred": self.resample_pred,
            "spatial_dims": ndim,
            "distance_unit": distance_unit,
            "volume_unit": volume_unit,
            "n_cases": n_cases,
            "medseg_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def _measure_all(
        self, pred_dir: str | Path, ref_dir: str | Path
    ) -> tuple[CaseMatch, list[_MeasuredCase]]:
        """Match the cases (warning about unmatched ones) and measure every pair."""
        from medseg.progress import track

        match = match_cases(pred_dir, ref_dir)
        if match.unmatched_ref:
            log.warning(
                "%d reference cases have no prediction: %s", len(match.unmatched_ref), match.unmatched_ref
            )
        if match.unmatched_pred:
            log.warning(
                "%d predictions have no reference: %s", len(match.unmatched_pred), match.unmatched_pred
            )
        prob_files: dict[str, Path] = {}
        if self.probabilities is not None:
            from medseg.evaluation.lesion_results import probability_files

            prob_files = probability_files(self.probabilities, [cid for cid, _, _ in match.pairs])
        measured = [
            self._measure(cid, p, r, prob_files.get(cid)) for cid, p, r in track(match.pairs, "evaluating")
        ]
        return match, measured

    def _with_lesions(
        self, result: EvaluationResult, measured: list[_MeasuredCase], settings: LesionSettings
    ) -> EvaluationResult:
        """``result`` with the lesion-wise results: columns, ``summary["lesions"]``, lesions.json."""
        from medseg.evaluation.lesion_results import (
            LesionEvaluationResult,
            lesion_settings_dict,
            summarise_lesions,
        )

        cases = {m.case: {k: m.lesion_result(k, settings) for k in result.labels} for m in measured}
        froc_cases = None
        if self.probabilities is not None:
            froc_cases = {m.case: {k: m.candidate(k) for k in result.labels} for m in measured}
        result.summary["lesions"] = summarise_lesions(cases, result.labels, froc_cases)
        result.settings["lesions"] = {
            **lesion_settings_dict(settings),
            "probabilities_dir": str(self.probabilities.resolve()) if self.probabilities else None,
            "froc_threshold": self.froc_threshold if self.probabilities else None,
        }
        base = {f.name: getattr(result, f.name) for f in fields(EvaluationResult)}
        return LesionEvaluationResult(
            **base, lesion_settings=settings, lesion_cases=cases, froc_cases=froc_cases
        )

    def _measure(
        self, cid: str, pred_path: Path, ref_path: Path, prob_path: Path | None = None
    ) -> _MeasuredCase:
        """Read one pair, put the prediction on the reference grid (or refuse), measure every label
        (and its lesions, and the FROC candidates of the probability map ``prob_path``)."""
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
        p, r = squeeze_plane(pred.array, axes), squeeze_plane(ref.array, axes)
        ref_labels = labels_present([r])
        wanted = (
            list(self.labels)
            if self.labels is not None
            else sorted(set(ref_labels) | set(labels_present([p])))
        )
        measured = _MeasuredCase(
            case=cid,
            pred_path=pred_path,
            ref_path=ref_path,
            metrics=evaluate_case(
                p, r, spacing, wanted, self.nsd_tolerance, self.hd_percentile, self.boundary_band_mm
            ),
            ref_labels=ref_labels,
            ndim=len(axes),
            unit="px" if is_2d_source(ref) else "mm",
            pixel_pairs=pair_counts(p, r) if len(axes) == 2 else {},
            spacing=spacing,
        )
        if self.distance_bins is not None:
            boxes = label_boxes(p, r, wanted)
            measured.distance_errors = measure_labels(p, r, spacing, boxes, self.distance_bins)
        if self.lesions is not None:
            from medseg.evaluation.lesions import evaluate_lesions

            measured.lesions = {k: evaluate_lesions(p == k, r == k, spacing, self.lesions) for k in wanted}
        if self.regions:
            tolerances = (self.nsd_tolerance, self.hd_percentile, self.boundary_band_mm)
            measured.region_metrics = measure_regions(p, r, spacing, self.regions, *tolerances)
            if self.lesions is not None:
                measured.region_lesions = measure_region_lesions(p, r, spacing, self.regions, self.lesions)
        if prob_path is not None:
            measured.candidates = self._candidates(prob_path, ref, ref_path, axes, r, wanted)
        return measured

    def _candidates(
        self, path: Path, ref: Volume, ref_path: Path, axes: tuple[int, ...], r: np.ndarray, wanted: list[int]
    ) -> dict[int, FrocCase]:
        """FROC candidates of each label in the probability map ``path`` (channel k: label k); without
        ``labels``, of every channel but the background."""
        from medseg.evaluation.froc import lesion_candidates
        from medseg.evaluation.lesion_results import read_probabilities

        prob = read_probabilities(path, wanted)
        n_channels = prob.array.shape[3]
        labels = wanted if self.labels is not None else sorted(set(wanted) | set(range(1, n_channels)))
        try:
            check_grid(prob, ref, path, ref_path)
            resample = False
        except GeometryMismatchError:
            if not self.resample_pred:
                raise
            log.info("resampling %s onto the grid of %s (linear)", path.name, ref_path.name)
            resample = True
        _, spacing = spatial_plane(ref)
        out = {}
        for label in labels:
            channel = Volume(np.ascontiguousarray(prob.array[..., label]), prob.affine)
            if resample:
                channel = resample_to_grid(channel, ref.affine, ref.spatial_shape, order=1)
            p = np.clip(squeeze_plane(channel.array, axes), 0.0, 1.0)
            out[label] = lesion_candidates(p, r == label, spacing, self.froc_threshold, self.lesions)
        return out


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
    spacing: tuple[float, ...] = ()
    lesions: dict[int, LesionCaseResult] = field(default_factory=dict)
    candidates: dict[int, FrocCase] = field(default_factory=dict)
    region_metrics: dict[str, ClassMetrics] = field(default_factory=dict)
    region_lesions: dict[str, LesionCaseResult] = field(default_factory=dict)
    distance_errors: dict[int, DistanceErrors] = field(default_factory=dict)

    def lesion_result(self, label: int, settings: LesionSettings) -> LesionCaseResult:
        """The lesions of ``label`` (a label absent from both masks: no lesion, no component)."""
        if label not in self.lesions:
            from medseg.evaluation.lesions import evaluate_lesions

            empty = np.zeros((1,) * self.ndim, dtype=bool)
            self.lesions[label] = evaluate_lesions(empty, empty, self.spacing, settings)
        return self.lesions[label]

    def candidate(self, label: int) -> FrocCase:
        """The FROC candidates of ``label``.

        Raises:
            ConfigError: the case's probability map has no channel for ``label``.
        """
        if label not in self.candidates:
            raise ConfigError(
                f"the probability map of case {self.case} has no channel for label {label}",
                hint="channel k holds label k (channel 0: background); evaluate the labels it predicts",
            )
        return self.candidates[label]

    def rows(self, labels: Mapping[int, str]) -> list[MetricRow]:
        """One row per label (labels absent from both masks follow the both-empty convention)."""
        scale = 1e-3 if self.ndim == 3 else 1.0  # mm3 -> ml; 2D areas stay in mm2 (px2)
        out = []
        for label, name in labels.items():
            m = self.metrics.get(label) or _both_empty_metrics(self.ndim)
            out.append(
                MetricRow.of(self.case, label, name, m, scale, str(self.pred_path), str(self.ref_path))
            )
        return out


def _pooled_confusion(
    measured: list[_MeasuredCase], labels: Mapping[int, str], summary: dict[str, Any]
) -> ConfusionMatrix:
    """The pixel confusion matrix of 2D cases, pooled over cases; adds it and its mean IoUs to
    ``summary``."""
    counts: dict[tuple[int, int], int] = {}
    for m in measured:
        for key, n in m.pixel_pairs.items():
            counts[key] = counts.get(key, 0) + n
    confusion = ConfusionMatrix.from_counts(counts, labels)
    summary["mean_iou"] = confusion.mean_iou()
    summary["mean_iou_with_background"] = confusion.mean_iou(include_background=True)
    summary["confusion_matrix"] = confusion.to_dict()
    return confusion


def evaluate(
    pred_dir: str | Path,
    ref_dir: str | Path,
    labels: str | Path | Mapping[Any, Any] | Iterable[int] | None = None,
    nsd_tolerance: float = 1.0,
    resample_pred: bool = False,
    output: str | Path | None = None,
    image_dir: str | Path | None = None,
    hd_percentile: float = 95.0,
    lesions: LesionSettings | bool | None = None,
    probabilities: str | Path | None = None,
    froc_threshold: float = 0.1,
    regions: RegionSource | None = None,
    boundary_band_mm: float = DEFAULT_BAND_MM,
    distance_bins_mm: Sequence[float] | None = DEFAULT_DISTANCE_BINS_MM,
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
        lesions: Lesion-wise evaluation (:class:`~medseg.evaluation.lesions.LesionSettings`, or
            True for the defaults): adds per-row columns ``lesion_dice``, ``lesion_hd95`` (mm),
            ``n_ref_lesions``, ``n_pred_lesions``, ``n_fp``, ``lesion_sensitivity@t`` and
            ``lesion_f1@t`` per IoU threshold t to metrics.csv, ``summary["lesions"][label]``
            (pooled detection, size strata in mm³, FROC) and lesions.json (per-lesion tables).
        probabilities: Folder of probability maps ``<case>_probabilities.nii.gz`` (``[X, Y, Z, K]``
            in [0, 1], channel k for label k) for the FROC of each class; needs ``lesions``.
        froc_threshold: Probability at which FROC candidates are extracted, in (0, 1].
        regions: Regions to score too (run folder, pipeline YAML, dataset.json, list of regions): adds
            ``region:<name>:<metric>`` columns and ``summary["regions"]`` (:mod:`~.regions_eval`); with
            ``lesions``, per region lesion-wise results too (:mod:`~.region_lesions`).
        boundary_band_mm: Band width (mm) of the boundary IoU (column ``boundary_iou``; Cheng et al.,
            CVPR 2021, see :mod:`~medseg.evaluation.boundary`).
        distance_bins_mm: Bin edges (mm) of the misclassification rate against the distance to the
            reference boundary, pooled over cases per class into boundary_error.json (None: not made).

    Returns:
        The :class:`~medseg.evaluation.results.EvaluationResult`
        (a :class:`~medseg.evaluation.lesion_results.LesionEvaluationResult` with ``lesions``,
        a :class:`~medseg.evaluation.regions_eval.RegionEvaluationResult` with ``regions``).

    Raises:
        MedsegError: missing folders, no matching case, unreadable files, or a prediction on
            another grid than its reference (:class:`GeometryMismatchError`) without ``resample_pred``.
        InputNotFoundError: a case without a probability map.
        ConfigError: bad lesion settings, ``probabilities`` without ``lesions``, a probability
            map that is not 4D or lacks the channel of a label, or a region source without regions.
    """
    evaluator = Evaluator(
        labels, nsd_tolerance, resample_pred, hd_percentile, lesions, probabilities, froc_threshold, regions,
        boundary_band_mm, distance_bins_mm,
    )  # fmt: skip
    return evaluator(pred_dir, ref_dir, output=output, image_dir=image_dir)
