"""Overlap, boundary and volume metrics of binary masks in physical units.

Every function takes two boolean masks (prediction, reference) of the same 2D or 3D
shape and, for the distance-based metrics, the voxel ``spacing`` in mm per axis, so
anisotropic grids are measured in millimetres rather than voxels.

Surfaces follow MONAI's definition (:func:`monai.metrics.utils.get_mask_edges`
without sub-voxel areas): a surface voxel is a foreground voxel with at least one
face-neighbour (6-connectivity in 3D, 4-connectivity in 2D) outside the mask, the
outside of the image counting as background. Distances run from surface-voxel centres
to the nearest surface-voxel centre of the other mask (exact Euclidean, in mm).
Percentiles interpolate linearly between order statistics (``torch.quantile``'s and
``numpy.percentile``'s default), and the symmetric HD95 is the larger of the two
directed 95th percentiles, as in :func:`monai.metrics.compute_hausdorff_distance`.

Empty masks (a convention, see ``docs/evaluation.md``):

========================  ======  =====  ============  ==========  ======  ==================
case                      Dice    IoU    boundary IoU  HD95, ASSD  NSD     relative volume
========================  ======  =====  ============  ==========  ======  ==================
both empty                1       1      1             0           1       0
only the reference empty  0       0      0             inf         0       inf
only the prediction empty 0       0      0             inf         0       -1
========================  ======  =====  ============  ==========  ======  ==================

Boundary IoU (Cheng et al., CVPR 2021) lives in :mod:`~medseg.evaluation.boundary`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medseg.evaluation.masks import (
    DEFAULT_BAND_MM,
    _as_mask,
    _check_pair,
    _check_spacing,
    surface_voxels,
)

__all__ = [
    "DEFAULT_BAND_MM",
    "ClassMetrics",
    "SegmentationMetrics",
    "SurfaceDistances",
    "assd",
    "compute_metrics",
    "dice",
    "hausdorff95",
    "hausdorff_distance",
    "iou",
    "normalized_surface_dice",
    "surface_voxels",
    "volume_difference",
    "volume_mm",
]


# -- overlap -----------------------------------------------------------------------------
def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient ``2|P∩R| / (|P| + |R|)``; 1 when both masks are empty."""
    p, r = _check_pair(pred, ref)
    denom = int(p.sum()) + int(r.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, r).sum()) / denom


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union (Jaccard index) ``|P∩R| / |P∪R|``; 1 when both are empty."""
    p, r = _check_pair(pred, ref)
    union = int(np.logical_or(p, r).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, r).sum()) / union


def _union_crop(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to the bounding box of their union (distances are unchanged)."""
    union = p | r
    coords = np.nonzero(union)
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    return p[box], r[box]


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm) between a prediction and a reference mask.

    Attributes:
        pred_to_ref: Distance of every prediction surface voxel to the reference surface.
        ref_to_pred: Distance of every reference surface voxel to the prediction surface.
        pred_empty: The prediction mask has no foreground.
        ref_empty: The reference mask has no foreground.
    """

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray
    pred_empty: bool
    ref_empty: bool

    @classmethod
    def compute(
        cls, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | float | None = None
    ) -> SurfaceDistances:
        """Surface distances of ``pred`` and ``ref`` on a grid of voxel size ``spacing`` (mm)."""
        from scipy.spatial import cKDTree

        p, r = _check_pair(pred, ref)
        sp = np.asarray(_check_spacing(spacing, p.ndim), dtype=np.float64)
        p_empty, r_empty = not p.any(), not r.any()
        if p_empty and r_empty:
            return cls(np.zeros(0), np.zeros(0), True, True)
        pc, rc = _union_crop(p, r)
        if p_empty or r_empty:  # every surface voxel of the other mask is infinitely far
            n_p, n_r = int(surface_voxels(pc).sum()), int(surface_voxels(rc).sum())
            return cls(np.full(n_p, np.inf), np.full(n_r, np.inf), p_empty, r_empty)
        p_pts = np.argwhere(surface_voxels(pc)).astype(np.float64) * sp
        r_pts = np.argwhere(surface_voxels(rc)).astype(np.float64) * sp
        pred_to_ref = cKDTree(r_pts, leafsize=32).query(p_pts, k=1)[0]
        ref_to_pred = cKDTree(p_pts, leafsize=32).query(r_pts, k=1)[0]
        return cls(np.asarray(pred_to_ref, np.float64), np.asarray(ref_to_pred, np.float64), False, False)

    @property
    def both_empty(self) -> bool:
        """Neither mask has foreground."""
        return self.pred_empty and self.ref_empty

    @property
    def one_empty(self) -> bool:
        """Exactly one of the masks is empty."""
        return self.pred_empty != self.ref_empty

    def hausdorff(self, percentile: float | None = 95.0) -> float:
        """Symmetric Hausdorff distance: the larger directed ``percentile`` (None: maximum)."""
        if percentile is not None and not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
        if self.both_empty:
            return 0.0
        if self.one_empty:
            return math.inf
        if percentile is None:
            return float(max(self.pred_to_ref.max(), self.ref_to_pred.max()))
        return float(
            max(np.percentile(self.pred_to_ref, percentile), np.percentile(self.ref_to_pred, percentile))
        )

    def average_symmetric(self) -> float:
        """Average symmetric surface distance: mean over the distances of both surfaces pooled."""
        if self.both_empty:
            return 0.0
        if self.one_empty:
            return math.inf
        total = self.pred_to_ref.sum() + self.ref_to_pred.sum()
        return float(total / (self.pred_to_ref.size + self.ref_to_pred.size))

    def surface_dice(self, tolerance_mm: float) -> float:
        """Normalised surface Dice: fraction of both surfaces within ``tolerance_mm`` of the other."""
        if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
            raise ValueError(f"tolerance must be a non-negative number of mm, got {tolerance_mm}")
        if self.both_empty:
            return 1.0
        if self.one_empty:
            return 0.0
        close = int((self.pred_to_ref <= tolerance_mm).sum()) + int((self.ref_to_pred <= tolerance_mm).sum())
        return close / (self.pred_to_ref.size + self.ref_to_pred.size)


def hausdorff_distance(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    percentile: float | None = None,
) -> float:
    """Symmetric Hausdorff distance in mm (``percentile=None``: the maximum; 95: HD95)."""
    return SurfaceDistances.compute(pred, ref, spacing).hausdorff(percentile)


def hausdorff95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (``inf`` when exactly one mask is empty)."""
    return SurfaceDistances.compute(pred, ref, spacing).hausdorff(95.0)


def assd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """Average symmetric surface distance in mm (``inf`` when exactly one mask is empty)."""
    return SurfaceDistances.compute(pred, ref, spacing).average_symmetric()


def normalized_surface_dice(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    tolerance_mm: float = 1.0,
) -> float:
    """Normalised surface Dice at ``tolerance_mm``: share of surface voxels of both masks lying
    within the tolerance of the other surface (Nikolov et al. 2021, voxel-counting form)."""
    return SurfaceDistances.compute(pred, ref, spacing).surface_dice(tolerance_mm)


# -- volume ------------------------------------------------------------------------------
def volume_mm(mask: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """Size of a mask: mm³ for 3D masks, mm² for 2D masks."""
    m = _as_mask(mask, "mask")
    sp = _check_spacing(spacing, m.ndim)
    return float(int(m.sum()) * float(np.prod(sp)))


def volume_difference(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | float | None = None
) -> tuple[float, float]:
    """``(|V_pred - V_ref|, (V_pred - V_ref) / V_ref)``: absolute difference in mm³ (mm² in 2D)
    and signed relative difference (0 when both are empty, inf when only the reference is)."""
    p, r = _check_pair(pred, ref)
    vp, vr = volume_mm(p, spacing), volume_mm(r, spacing)
    if vr == 0:
        return vp, (0.0 if vp == 0 else math.inf)
    return abs(vp - vr), (vp - vr) / vr


# -- all at once -------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassMetrics:
    """Every metric of one prediction/reference mask pair.

    Sizes are in mm³ for 3D masks and mm² for 2D masks; ``boundary_iou`` is the boundary IoU
    of :func:`~medseg.evaluation.boundary.boundary_iou` at the band of :func:`compute_metrics`.
    """

    dice: float
    iou: float
    boundary_iou: float
    hd95: float
    assd: float
    nsd: float
    size_pred: float
    size_ref: float
    abs_size_diff: float
    rel_size_diff: float
    pred_empty: bool
    ref_empty: bool

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dictionary."""
        return asdict(self)


def compute_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    nsd_tolerance: float = 1.0,
    hd_percentile: float = 95.0,
    boundary_band_mm: float = DEFAULT_BAND_MM,
) -> ClassMetrics:
    """All metrics of one mask pair ``[*S]`` (2D/3D), computing the surface distances once.

    Args:
        pred: Predicted boolean mask.
        ref: Reference boolean mask of the same shape.
        spacing: Voxel size in mm per axis (None: 1).
        nsd_tolerance: Tolerance (mm) of the normalised surface Dice.
        hd_percentile: Percentile of the Hausdorff distance (95: HD95).
        boundary_band_mm: Band width (mm) of the boundary IoU.

    Raises:
        ValueError: masks of different shapes or not 2D/3D, bad spacing, tolerance or band.
    """
    from medseg.evaluation.boundary import boundary_iou

    p, r = _check_pair(pred, ref)
    sp = _check_spacing(spacing, p.ndim)
    sd = SurfaceDistances.compute(p, r, sp)
    abs_diff, rel_diff = volume_difference(p, r, sp)
    return ClassMetrics(
        dice=dice(p, r),
        iou=iou(p, r),
        boundary_iou=boundary_iou(p, r, sp, boundary_band_mm),
        hd95=sd.hausdorff(hd_percentile),
        assd=sd.average_symmetric(),
        nsd=sd.surface_dice(nsd_tolerance),
        size_pred=volume_mm(p, sp),
        size_ref=volume_mm(r, sp),
        abs_size_diff=abs_diff,
        rel_size_diff=rel_diff,
        pred_empty=sd.pred_empty,
        ref_empty=sd.ref_empty,
    )


class SegmentationMetrics:
    """Callable form of :func:`compute_metrics` for pipelines.

    Args:
        nsd_tolerance: Tolerance (mm) of the normalised surface Dice.
        hd_percentile: Percentile of the Hausdorff distance (95 for HD95).
        boundary_band_mm: Band width (mm) of the boundary IoU.
    """

    def __init__(
        self,
        nsd_tolerance: float = 1.0,
        hd_percentile: float = 95.0,
        boundary_band_mm: float = DEFAULT_BAND_MM,
    ) -> None:
        if not math.isfinite(nsd_tolerance) or nsd_tolerance < 0:
            raise ValueError(f"nsd_tolerance must be a non-negative number of mm, got {nsd_tolerance}")
        if not 0.0 <= hd_percentile <= 100.0:
            raise ValueError(f"hd_percentile must lie in [0, 100], got {hd_percentile}")
        if not math.isfinite(boundary_band_mm) or boundary_band_mm <= 0:
            raise ValueError(f"boundary_band_mm must be a positive number of mm, got {boundary_band_mm}")
        self.nsd_tolerance = float(nsd_tolerance)
        self.hd_percentile = float(hd_percentile)
        self.boundary_band_mm = float(boundary_band_mm)

    def __call__(
        self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | float | None = None
    ) -> ClassMetrics:
        return compute_metrics(
            pred, ref, spacing, self.nsd_tolerance, self.hd_percentile, self.boundary_band_mm
        )

    def __repr__(self) -> str:
        return (
            f"SegmentationMetrics(nsd_tolerance={self.nsd_tolerance}, hd_percentile={self.hd_percentile}, "
            f"boundary_band_mm={self.boundary_band_mm})"
        )
