"""Boundary IoU, and the misclassification rate against the distance to the reference boundary.

**Boundary IoU** (Cheng, Girshick, Dollár, Berg and Kirillov, "Boundary IoU: Improving
Object-Centric Image Segmentation Evaluation", CVPR 2021) is the IoU of the inner boundary bands
of the two masks::

    BIoU(P, R) = |(P_d ∩ P) ∩ (R_d ∩ R)| / |(P_d ∩ P) ∪ (R_d ∩ R)|

where ``X_d ∩ X`` (the *band* of X) holds the voxels of X whose centre lies closer than ``d`` mm to
the centre of a contour voxel of X. The contour is that of the surface metrics
(:func:`~medseg.evaluation.metrics.surface_voxels`: voxels of X with a face-neighbour outside X, the
outside of the image counting as outside, as the paper's code pads the mask with zeros), and
distances are exact Euclidean distances in mm (``scipy.ndimage`` with ``sampling=spacing``), so
anisotropic voxels are measured physically. The band always holds the contour itself; on a grid of
1 px, ``d = k`` px keeps ``k`` voxel layers along the axes, as the paper's ``k`` erosions with a 3x3
square do (its chessboard distance is Euclidean here). Along an axis of spacing s the band keeps
``ceil(d / s)`` layers: a 2 mm band keeps 2 layers of 1 mm voxels, 3 of 0.8 mm voxels and only the
contour of 2.5 mm slices. Once ``d`` exceeds an object's thickness the band is the whole object and
BIoU equals IoU.

Band width: the default :data:`DEFAULT_BAND_MM` = 2 mm (2 px for pictures without spacing, the
paper's d = 2 px) keeps the boundary of CT/MR structures at ~1 mm voxels and of EM cells, where a
1-2 voxel boundary shift is what separates architectures. The paper sets ``d`` to 2% of the image
diagonal (about 15 px on COCO images, rounded to whole pixels); to reproduce that, pass
``band_mm=band_from_diagonal(shape, spacing)`` for the whole image (not a crop).

Empty masks follow Dice and IoU (:mod:`~medseg.evaluation.metrics`): 1 when both are empty, 0
when exactly one is.

**Error against distance** (:func:`error_by_distance`, :class:`DistanceErrors`): every voxel is
given its distance to the reference boundary, ``d(v)``: the Euclidean distance (mm) from its centre
to the nearest voxel centre on the other side of the reference boundary (for a reference voxel the
nearest voxel outside the reference, for any other voxel the nearest reference voxel; the outside of
the image does not count, so only real label transitions are boundaries). Voxels touching the
boundary are thus one spacing away; the boundary surface itself lies about half a voxel closer.
Voxels are binned by ``d`` into right-closed bins ``(e[i], e[i+1]]`` (the first one closed on both
sides) and each bin counts its voxels and the misclassified ones, inside the reference (missed
voxels, false negatives) and outside it (false positives). Counts are summed over cases before
dividing, so the pooled rate is the share of wrong voxels among all voxels at that distance. A
reference that is empty (or fills the image) has no boundary and adds no voxel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.evaluation.masks import DEFAULT_BAND_MM, _as_mask, _check_pair, _check_spacing, surface_voxels

__all__ = [
    "DEFAULT_BAND_MM",
    "DEFAULT_DISTANCE_BINS_MM",
    "PAPER_BAND_RATIO",
    "DistanceErrors",
    "band_from_diagonal",
    "boundary_band",
    "boundary_iou",
    "check_bins",
    "error_by_distance",
    "reference_distance",
]

#: Default bin edges (mm) of the error-against-distance curve.
DEFAULT_DISTANCE_BINS_MM: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0)
#: The paper's band width: 2% of the image diagonal.
PAPER_BAND_RATIO = 0.02
#: Relative slack of the band comparison (a distance equal to the band up to rounding is outside it).
_SLACK = 1e-9
_SIDES = ("both", "inside", "outside")
#: Largest structuring element (voxels) with which the band is found by erosion rather than by EDT.
_MAX_BALL = 150


def band_from_diagonal(
    shape: Sequence[int], spacing: Sequence[float] | float | None = None, ratio: float = PAPER_BAND_RATIO
) -> float:
    """The paper's band width ``ratio`` x image diagonal in mm (``ratio`` 0.02: Cheng et al. 2021).

    Args:
        shape: The image's spatial shape ``[*S]`` (the whole image, not a crop).
        spacing: Voxel size in mm per axis (None: 1, i.e. pixels).
        ratio: Fraction of the diagonal.
    """
    sp = _check_spacing(spacing, len(shape))
    return float(ratio * math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))))


def _check_band(band_mm: float) -> float:
    if not math.isfinite(band_mm) or band_mm <= 0:
        raise ValueError(f"the boundary band must be a positive number of mm, got {band_mm}")
    return float(band_mm)


def boundary_band(
    mask: np.ndarray, spacing: Sequence[float] | float | None = None, band_mm: float = DEFAULT_BAND_MM
) -> np.ndarray:
    """The inner band ``X_d ∩ X`` of a 2D/3D boolean mask ``[*S]``: its voxels whose centre lies
    closer than ``band_mm`` to the centre of one of its contour voxels
    (:func:`~medseg.evaluation.metrics.surface_voxels`), the contour voxels included.

    A narrow band is the contour dilated by the ellipsoid of voxel offsets shorter than the band
    (fast); a wide one comes from the Euclidean distance transform. Both are exact.

    Raises:
        ValueError: a mask that is not boolean/0-1, bad spacing, or a band that is not > 0 mm.
    """
    from scipy import ndimage

    m = _as_mask(mask, "mask")
    sp = _check_spacing(spacing, m.ndim)
    width = _check_band(band_mm) * (1 - _SLACK)
    contour = surface_voxels(m)
    if not contour.any():
        return contour
    ball = _ball(sp, width)
    if ball is not None:
        return m & ndimage.binary_dilation(contour, structure=ball)
    return m & (ndimage.distance_transform_edt(~contour, sampling=sp) < width)


def _ball(spacing: Sequence[float], width: float) -> np.ndarray | None:
    """The voxel offsets shorter than ``width`` mm (an ellipsoid in voxels) as a structuring element,
    or None when it would hold more than :data:`_MAX_BALL` voxels."""
    half = [math.ceil(width / s) for s in spacing]
    if math.prod(2 * h + 1 for h in half) > 4 * _MAX_BALL:
        return None
    grid = np.indices([2 * h + 1 for h in half], dtype=np.float64)
    sq = sum(((g - h) * s) ** 2 for g, h, s in zip(grid, half, spacing))
    ball = np.sqrt(sq) < width
    return ball if int(ball.sum()) <= _MAX_BALL else None


def boundary_iou(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    band_mm: float = DEFAULT_BAND_MM,
) -> float:
    """Boundary IoU (Cheng et al., CVPR 2021) of two boolean masks ``[*S]`` (2D or 3D) with a band of
    ``band_mm`` mm (see the module text); 1 when both are empty, 0 when exactly one is.

    Raises:
        ValueError: masks of different shapes, not 2D/3D, bad spacing, or a band not > 0 mm.
    """
    p, r = _check_pair(pred, ref)
    sp = _check_spacing(spacing, p.ndim)
    bp, br = boundary_band(p, sp, band_mm), boundary_band(r, sp, band_mm)
    union = int(np.count_nonzero(bp | br))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(bp & br)) / union


def check_bins(bins_mm: Iterable[float]) -> np.ndarray:
    """Bin edges as a float array ``[n + 1]``: at least two, >= 0, increasing; the last may be inf.

    Raises:
        ConfigError: edges that break these rules.
    """
    edges = np.asarray([float(b) for b in bins_mm], dtype=np.float64)
    ok = edges.size >= 2 and bool(np.all(np.isfinite(edges[:-1])))
    ok = ok and not math.isnan(edges[-1]) and edges[0] >= 0 and bool(np.all(np.diff(edges) > 0))
    if not ok:
        raise ConfigError(
            f"distance bins must be at least two increasing edges >= 0 mm, got {edges.tolist()}",
            hint="e.g. 0,0.5,1,2,4,8 (the last edge may be inf)",
        )
    return edges


def reference_distance(ref: np.ndarray, spacing: Sequence[float] | float | None = None) -> np.ndarray:
    """Distance ``[*S]`` (mm, float64) of every voxel to the reference boundary: from its centre to the
    nearest voxel centre on the other side of ``ref``; inf everywhere when ``ref`` has no boundary."""
    from scipy import ndimage

    r = _as_mask(ref, "ref")
    sp = _check_spacing(spacing, r.ndim)
    if not r.any() or r.all():
        return np.full(r.shape, math.inf)
    dist = ndimage.distance_transform_edt(~r, sampling=sp)
    dist[r] = ndimage.distance_transform_edt(r, sampling=sp)[r]
    return dist


@dataclass
class DistanceErrors:
    """Voxel and error counts per distance bin, inside and outside the reference (see module text).

    Attributes:
        edges: Bin edges in mm ``[n + 1]``.
        voxels: Voxels per bin ``[2, n]`` (int64): row 0 inside the reference, row 1 outside.
        errors: Misclassified voxels per bin ``[2, n]``: missed (row 0) and false positive (row 1).
        n_cases: How many case/class pairs were summed.
    """

    edges: np.ndarray
    voxels: np.ndarray
    errors: np.ndarray
    n_cases: int = 1

    @classmethod
    def empty(cls, bins_mm: Iterable[float]) -> DistanceErrors:
        """Zero counts over the bins ``bins_mm`` (no case)."""
        edges = check_bins(bins_mm)
        zeros = np.zeros((2, edges.size - 1), dtype=np.int64)
        return cls(edges, zeros, zeros.copy(), 0)

    @classmethod
    def measure(
        cls,
        pred: np.ndarray,
        ref: np.ndarray,
        spacing: Sequence[float] | float | None = None,
        bins_mm: Iterable[float] = DEFAULT_DISTANCE_BINS_MM,
    ) -> DistanceErrors:
        """The counts of one boolean mask pair ``[*S]`` on a grid of voxel size ``spacing`` (mm)."""
        p, r = _check_pair(pred, ref)
        out = cls.empty(bins_mm)
        out.n_cases = 1
        dist = reference_distance(r, spacing)
        n = out.edges.size - 1
        index = np.searchsorted(out.edges, dist, side="left") - 1
        index[dist == out.edges[0]] = 0
        valid = (index >= 0) & (index < n) & np.isfinite(dist)
        wrong = p != r
        for side, where in enumerate((valid & r, valid & ~r)):
            out.voxels[side] = np.bincount(index[where], minlength=n)
            out.errors[side] = np.bincount(index[where & wrong], minlength=n)
        return out

    def __add__(self, other: DistanceErrors) -> DistanceErrors:
        if not np.array_equal(self.edges, other.edges):
            raise ValueError(f"cannot add counts over different bins: {self.edges} and {other.edges}")
        return DistanceErrors(
            self.edges, self.voxels + other.voxels, self.errors + other.errors, self.n_cases + other.n_cases
        )

    def counts(self, side: str = "both") -> tuple[np.ndarray, np.ndarray]:
        """``(voxels, errors)`` per bin ``[n]`` of one ``side``: "both", "inside" or "outside"."""
        if side not in _SIDES:
            raise ValueError(f"side must be one of {', '.join(_SIDES)}, got {side!r}")
        if side == "both":
            return self.voxels.sum(axis=0), self.errors.sum(axis=0)
        row = _SIDES.index(side) - 1
        return self.voxels[row].copy(), self.errors[row].copy()

    def rates(self, side: str = "both") -> np.ndarray:
        """Error rate per bin ``[n]`` (errors / voxels; NaN for a bin without voxels)."""
        voxels, errors = self.counts(side)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(voxels > 0, errors / np.maximum(voxels, 1), math.nan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``n_cases`` and, for "both", "inside", "outside", voxels, errors and
        error_rate per bin (None for a bin without voxels)."""
        out: dict[str, Any] = {"n_cases": int(self.n_cases)}
        for side in _SIDES:
            voxels, errors = self.counts(side)
            out[side] = {
                "voxels": voxels.tolist(),
                "errors": errors.tolist(),
                "error_rate": [None if math.isnan(v) else float(v) for v in self.rates(side)],
            }
        return out


def error_by_distance(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    bins_mm: Iterable[float] = DEFAULT_DISTANCE_BINS_MM,
    side: str = "both",
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, errors)`` per distance bin ``[n]`` (int64) of a boolean mask pair ``[*S]``: voxels whose
    distance to the reference boundary (mm, see the module text) falls in each bin, and those of them
    misclassified; ``side`` restricts to voxels "inside" or "outside" the reference.

    Raises:
        ValueError: masks of different shapes, not 2D/3D, bad spacing or an unknown side.
        ConfigError: bin edges that are not increasing values >= 0.
    """
    return DistanceErrors.measure(pred, ref, spacing, bins_mm).counts(side)


def measure_labels(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    boxes: Mapping[int, tuple[slice, ...] | None],
    bins_mm: Iterable[float],
) -> dict[int, DistanceErrors]:
    """:class:`DistanceErrors` of each label of integer maps ``[*S]``, measured inside the label's box
    (``boxes``: union bounding box in both maps, None when absent from both) grown by the last bin
    edge and one voxel: voxels further out lie beyond the last bin, so every count is unchanged."""
    edges = check_bins(bins_mm)
    out: dict[int, DistanceErrors] = {}
    for label, box in boxes.items():
        if box is None:
            out[label] = DistanceErrors.empty(edges)
            out[label].n_cases = 1
            continue
        grown = _grow(box, spacing, pred.shape, float(edges[-1]))
        out[label] = DistanceErrors.measure(pred[grown] == label, ref[grown] == label, spacing, edges)
    return out


def _grow(
    box: tuple[slice, ...], spacing: Sequence[float], shape: Sequence[int], reach_mm: float
) -> tuple[slice, ...]:
    """``box`` grown by ``reach_mm`` and one voxel on every side, clipped to ``shape``."""
    if not math.isfinite(reach_mm):
        return tuple(slice(0, n) for n in shape)
    pads = [math.ceil(reach_mm / sp) + 1 for sp in spacing]
    return tuple(slice(max(0, s.start - k), min(n, s.stop + k)) for s, k, n in zip(box, pads, shape))


def pooled_errors_json(
    per_case: Iterable[Mapping[int, DistanceErrors]],
    labels: Mapping[int, str],
    bins_mm: Iterable[float],
    distance_unit: str = "mm",
) -> dict[str, Any]:
    """The content of ``boundary_error.json``: the bin edges (an infinite last edge as None), the unit,
    and per class (and, with several classes, ``all_classes``) the counts summed over cases with
    their error rates (:meth:`DistanceErrors.to_dict`)."""
    edges = check_bins(bins_mm)
    totals = {label: DistanceErrors.empty(edges) for label in labels}
    for case in per_case:
        for label in labels:
            if label in case:
                totals[label] = totals[label] + case[label]
            else:  # absent from both masks of the case: no boundary, no voxel
                totals[label].n_cases += 1
    classes = {str(k): {"name": labels[k], **totals[k].to_dict()} for k in labels}
    out: dict[str, Any] = {
        "bins": [float(e) if math.isfinite(e) else None for e in edges],
        "distance_unit": distance_unit,
        "pooling": "voxel counts summed over cases, then divided",
        "classes": classes,
    }
    if len(labels) > 1:
        pooled = DistanceErrors.empty(edges)
        for t in totals.values():
            pooled = pooled + t
        out["all_classes"] = {"name": "all classes", **pooled.to_dict()}
    return out
