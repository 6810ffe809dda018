"""Lesion-wise evaluation of one class: BraTS 2023 lesion-wise Dice and HD95, detection, size strata, FROC.

All functions take binary masks (2D or 3D, prediction and reference of the same shape) and
the voxel ``spacing`` in mm per axis; volumes are in mm³ (mm² for 2D masks).

* **Lesions** are connected components (``cc3d``; 26-connectivity in 3D, 8 in 2D by default).
  Reference components whose dilated regions touch form one lesion (below).
* **Lesion-wise Dice and HD95** follow the BraTS 2023 lesion-wise metrics (LaBella et al.
  2023, arXiv:2305.07642, and the other BraTS 2023 challenge papers), as defined by the
  official evaluation code (R. Saluja, github.com/rachitsaluja/BraTS-2023-Metrics,
  ``get_lesion_wise_score``):

  1. the reference mask is dilated ``dilation`` times with the rank-2 structuring element
     (18-neighbourhood in 3D, 8 in 2D); reference components lying in one component of the
     dilated mask are one lesion;
  2. a lesion is matched with every predicted component that intersects its dilated region;
  3. its Dice and HD95 are computed between the lesion and the union of its matched
     components (a predicted component may be matched with several lesions and is then used
     for each); a lesion with no match has Dice 0 and HD95 ``max_hd95_mm`` (374 mm);
  4. predicted components matched with no lesion are false positives: Dice 0, HD95 374 mm;
  5. the case's score is the sum over lesions and false positives divided by
     (number of lesions + number of false positives). No lesion and no false positive:
     Dice 1, HD95 0. Lesions of at most ``min_volume`` are left out of the score (BraTS-GLI
     uses 50 mm³; medseg's default, 0, keeps all), and components matched with them are no
     false positives.

  HD95 is medseg's (equal to :func:`monai.metrics.compute_hausdorff_distance` at percentile
  95, see :mod:`~medseg.evaluation.metrics`), not the surfel-weighted one of DeepMind's
  ``surface_distance`` used by the BraTS code, so values can differ by a fraction of a voxel.
* **Detection** at IoU thresholds t (default 0, 0.1, 0.5): a lesion is detected when the
  IoU between it and the union of its matched components exceeds t (t = 0: any voxel
  shared). IoU > 0.5 is the localisation criterion of Metrics Reloaded (Maier-Hein et al.,
  Nat. Methods 2024). A predicted component is a true positive at t when it is matched with
  a detected lesion, else a false positive at t.
* **FROC** (:mod:`medseg.evaluation.froc`): candidates are the components of the
  probability map thresholded at a candidate threshold, scored by their maximum
  probability. The FROC score is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false
  positives per case (LUNA16, Setio et al., Med. Image Anal. 42, 2017), linearly interpolated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.errors import ConfigError, GeometryMismatchError
from medseg.evaluation import metrics as em
from medseg.evaluation.summary import describe

if TYPE_CHECKING:
    from medseg.evaluation.froc import FrocResult

from medseg.evaluation.lesion_counts import (
    BRATS_2023,
    BRATS_MAX_HD95_MM,
    DetectionCounts,
    LesionSettings,
    PredLesion,
    RefLesion,
    StratumCounts,
    _detection,
    _json,
    _plain,
    _strata,
)

log = logging.getLogger(__name__)

__all__ = [
    "BRATS_2023",
    "BRATS_MAX_HD95_MM",
    "DetectionCounts",
    "LesionCaseResult",
    "LesionSettings",
    "LesionSummary",
    "PredLesion",
    "RefLesion",
    "StratumCounts",
    "evaluate_lesions",
    "label_components",
    "label_lesions",
]


# -- components --------------------------------------------------------------------------
def _check_mask(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a 2D/3D bool mask (metrics' conversion), refused in one line otherwise."""
    a = np.asarray(array)
    if a.ndim not in (2, 3):
        raise ConfigError(f"{name} must be 2D or 3D, got shape {a.shape}", hint="pass one class of one case")
    try:
        return em._as_mask(a, name)
    except ValueError:
        raise ConfigError(f"{name} is not a binary mask", hint="pass labels == k for class k") from None


def _check_spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    sp = (1.0,) * ndim if spacing is None else tuple(float(s) for s in np.broadcast_to(spacing, (ndim,)))
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ConfigError(
            f"spacing must be {ndim} positive values in mm, got {spacing}", hint="e.g. (1, 1, 1)"
        )
    return sp


def label_components(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Connected components of a binary mask with ``cc3d`` (0: background, 1…n: components).

    Args:
        mask: 2D or 3D binary mask.
        connectivity: 6, 18, 26 (3D) or 4, 8 (2D); None: 26 in 3D, 8 in 2D.

    Returns:
        The label array (same shape, unsigned integers) and the number of components.
    """
    from medseg.transforms.components import connected_components

    m = _check_mask(mask, "mask")
    conn = LesionSettings(connectivity=connectivity).connectivity_for(m.ndim)
    return connected_components(m, conn)


def label_lesions(
    mask: np.ndarray, dilation: int = 3, connectivity: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Reference lesions as BraTS 2023 defines them: components merged when their dilations touch.

    Args:
        mask: 2D or 3D binary reference mask.
        dilation: Iterations of binary dilation with the rank-2 structuring element (0: none).
        connectivity: As in :func:`label_components`.

    Returns:
        ``(lesions, regions, n)``: the lesion labels on the mask's voxels, the labels of the
        dilated regions used for matching (equal to ``lesions`` when ``dilation`` is 0), and
        the number of lesions.
    """
    from scipy import ndimage

    m = _check_mask(mask, "mask")
    if dilation == 0 or not m.any():
        labels, n = label_components(m, connectivity)
        return labels, labels, n
    structure = ndimage.generate_binary_structure(m.ndim, 2)
    regions, n = label_components(ndimage.binary_dilation(m, structure, iterations=dilation), connectivity)
    return np.where(m, regions, 0).astype(regions.dtype), regions, n


def _pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """The distinct (a, b) label pairs of voxels where both are foreground."""
    both = (a > 0) & (b > 0)
    base = int(b.max(initial=0)) + 1
    codes = np.unique(a[both].astype(np.int64) * base + b[both].astype(np.int64))
    return [(int(c // base), int(c % base)) for c in codes]


@dataclass(frozen=True)
class LesionCaseResult:
    """Lesion-wise results of one case and class (see the module docstring for the definitions).

    Attributes:
        ref_lesions, pred_lesions: The lesions and predicted components, by id.
        spacing: Voxel size (mm); ``ndim``: 2 or 3 (volumes in mm² or mm³).
        lesion_dice, lesion_hd95: The BraTS 2023 lesion-wise scores (HD95 in mm).
        n_ref: Lesions counted (not ignored); n_pred: predicted components; n_fp: BraTS false
            positives (components matched with no lesion).
    """

    ref_lesions: tuple[RefLesion, ...]
    pred_lesions: tuple[PredLesion, ...]
    spacing: tuple[float, ...]
    ndim: int
    settings: LesionSettings = field(default_factory=LesionSettings)

    @property
    def n_ref(self) -> int:
        return sum(not r.ignored for r in self.ref_lesions)

    @property
    def n_pred(self) -> int:
        return len(self.pred_lesions)

    @property
    def n_fp(self) -> int:
        return sum(p.false_positive for p in self.pred_lesions)

    @property
    def lesion_dice(self) -> float:
        den = self.n_ref + self.n_fp
        return sum(r.dice for r in self.ref_lesions if not r.ignored) / den if den else 1.0

    @property
    def lesion_hd95(self) -> float:
        den = self.n_ref + self.n_fp
        total = sum(r.hd95 for r in self.ref_lesions if not r.ignored) + self.n_fp * self.settings.max_hd95_mm
        return total / den if den else 0.0

    def detection(self) -> list[DetectionCounts]:
        """Detection counts at each of ``settings.iou_thresholds``."""
        return [_detection(self.ref_lesions, self.pred_lesions, t) for t in self.settings.iou_thresholds]

    def strata(self) -> list[StratumCounts]:
        """Detection sensitivity per size band and threshold."""
        return _strata(self.ref_lesions, self.settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary (NaN and inf as None)."""
        return _json(
            {
                "lesion_dice": self.lesion_dice,
                "lesion_hd95_mm": self.lesion_hd95,
                "n_ref_lesions": self.n_ref,
                "n_pred_lesions": self.n_pred,
                "n_fp": self.n_fp,
                "volume_unit": "mm3" if self.ndim == 3 else "mm2",
                "spacing_mm": self.spacing,
                "settings": _plain(self.settings),
                "detection": [d.to_dict() for d in self.detection()],
                "strata": [s.to_dict() for s in self.strata()],
                "ref_lesions": [_plain(r) for r in self.ref_lesions],
                "pred_lesions": [_plain(p) for p in self.pred_lesions],
            }
        )


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, r = _check_mask(pred, "prediction"), _check_mask(ref, "reference")
    if p.shape != r.shape:
        raise GeometryMismatchError(
            f"prediction shape {p.shape} differs from reference shape {r.shape}",
            hint="resample the prediction onto the reference grid first",
        )
    return p, r


def _box(*boxes: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(s.start for s in ax), max(s.stop for s in ax)) for ax in zip(*boxes))


def evaluate_lesions(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    settings: LesionSettings | None = None,
) -> LesionCaseResult:
    """Lesion-wise Dice, HD95, detection and size strata of one class of one case.

    Args:
        pred: Predicted binary mask, shape (X, Y, Z) or (X, Y).
        ref: Reference binary mask of the same shape.
        spacing: Voxel size in mm per axis (None: 1 mm).
        settings: Matching and counting rules (default: BraTS 2023 dilation 3, every lesion kept).

    Returns:
        The per-lesion table and scores; see the module docstring for the BraTS 2023 rules.

    Raises:
        ConfigError: A mask that is not binary 2D/3D.
        GeometryMismatchError: Masks of different shapes.
        ConfigError: Bad spacing or connectivity.
    """
    from scipy import ndimage

    s = settings or LesionSettings()
    p, r = _check_pair(pred, ref)
    sp = _check_spacing(spacing, p.ndim)
    voxel = float(np.prod(sp))
    lesions, regions, n_ref = label_lesions(r, s.dilation, s.connectivity)
    comps, n_pred = label_components(p, s.connectivity)
    matches: dict[int, list[int]] = {k: [] for k in range(1, n_ref + 1)}
    for k, c in _pairs(regions, comps):
        matches[k].append(c)
    ref_boxes, pred_boxes = ndimage.find_objects(lesions), ndimage.find_objects(comps)
    ref_counts = np.bincount(lesions.ravel(), minlength=n_ref + 1)
    pred_counts = np.bincount(comps.ravel(), minlength=n_pred + 1)
    refs = []
    for k in range(1, n_ref + 1):
        matched = matches[k]
        box = _box(ref_boxes[k - 1], *(pred_boxes[c - 1] for c in matched))
        g, u = lesions[box] == k, np.isin(comps[box], matched)
        hd95 = em.hausdorff95(u, g, sp) if matched else s.max_hd95_mm
        volume = int(ref_counts[k]) * voxel
        dice, iou = em.dice(u, g), em.iou(u, g)
        refs.append(
            RefLesion(k, volume, int(ref_counts[k]), tuple(matched), dice, iou, hd95, volume <= s.min_volume)
        )
    by_pred: dict[int, list[int]] = {c: [] for c in range(1, n_pred + 1)}
    for k, cs in matches.items():
        for c in cs:
            by_pred[c].append(k)
    preds = [
        PredLesion(c, int(pred_counts[c]) * voxel, int(pred_counts[c]), tuple(by_pred[c])) for c in by_pred
    ]
    return LesionCaseResult(tuple(refs), tuple(preds), sp, p.ndim, s)


# -- over cases --------------------------------------------------------------------------
@dataclass(frozen=True)
class LesionSummary:
    """Lesion-wise results over cases.

    ``lesion_dice`` and ``lesion_hd95`` are :func:`~medseg.evaluation.summary.describe`
    statistics of the per-case scores (the BraTS ranking uses their mean); detection and strata
    counts are pooled over cases (micro average); ``fp_per_case`` is the mean BraTS false
    positives per case.
    """

    n_cases: int
    lesion_dice: dict[str, Any]
    lesion_hd95: dict[str, Any]
    n_ref_lesions: int
    n_pred_lesions: int
    n_fp: int
    detection: tuple[DetectionCounts, ...]
    strata: tuple[StratumCounts, ...]
    settings: LesionSettings
    froc: FrocResult | None = None

    @property
    def fp_per_case(self) -> float:
        return self.n_fp / self.n_cases

    @classmethod
    def from_cases(cls, cases: Sequence[LesionCaseResult], froc: FrocResult | None = None) -> LesionSummary:
        """Pool per-case results that share one :class:`LesionSettings`.

        Raises:
            ConfigError: No case.
            ConfigError: Cases evaluated with different settings.
        """
        if not cases:
            raise ConfigError("no case to summarise", hint="pass one evaluate_lesions() result per case")
        settings = cases[0].settings
        if any(c.settings != settings for c in cases):
            raise ConfigError(
                "cases were evaluated with different lesion settings", hint="use one LesionSettings"
            )
        per_case = [c.detection() for c in cases]
        detection = tuple(DetectionCounts.pooled([d[i] for d in per_case]) for i in range(len(per_case[0])))
        strata = _strata([r for c in cases for r in c.ref_lesions], settings)
        return cls(
            n_cases=len(cases),
            lesion_dice=describe(c.lesion_dice for c in cases),
            lesion_hd95=describe(c.lesion_hd95 for c in cases),
            n_ref_lesions=sum(c.n_ref for c in cases),
            n_pred_lesions=sum(c.n_pred for c in cases),
            n_fp=sum(c.n_fp for c in cases),
            detection=detection,
            strata=tuple(strata),
            settings=settings,
            froc=froc,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary (NaN and inf as None)."""
        out = {**_plain(self), "fp_per_case": self.fp_per_case, "settings": _plain(self.settings)}
        out["detection"] = [d.to_dict() for d in self.detection]
        out["strata"] = [s.to_dict() for s in self.strata]
        out["froc"] = self.froc.to_dict() if self.froc else None
        return _json(out)
