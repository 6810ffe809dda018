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
* **FROC** (:func:`lesion_candidates`, :func:`froc`): candidates are the components of the
  probability map thresholded at a candidate threshold, scored by their maximum
  probability. The FROC score is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false
  positives per case (LUNA16, Setio et al., Med. Image Anal. 42, 2017), linearly interpolated.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.errors import ConfigError, GeometryMismatchError
from medseg.evaluation import metrics as em
from medseg.evaluation.summary import describe

if TYPE_CHECKING:
    from medseg.evaluation.froc import FrocResult

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

#: HD95 (mm) given to missed lesions and false positives by the BraTS 2023 code.
BRATS_MAX_HD95_MM = 374.0
#: BraTS 2023 (dilation iterations, lesions of at most this volume in mm³ left out) per challenge.
BRATS_2023 = {"GLI": (3, 50.0), "SSA": (3, 50.0), "PED": (3, 50.0), "MEN": (1, 50.0), "MET": (1, 2.0)}


def _nan_div(num: float, den: float) -> float:
    return num / den if den else math.nan


def _json(value: Any) -> Any:
    """NaN and infinities as None, tuples as lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def _plain(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True)
class LesionSettings:
    """How lesions are found, matched and counted.

    Args:
        connectivity: Connectivity of components: 6, 18 or 26 in 3D, 4 or 8 in 2D
            (None: 26 in 3D, 8 in 2D, as BraTS).
        dilation: Iterations of the reference dilation (voxels, rank-2 element); BraTS 2023
            uses 3 (GLI, SSA, PED) or 1 (MEN, MET). 0 matches by overlap alone.
        max_hd95_mm: HD95 of a missed lesion or a false positive (BraTS: 374 mm).
        min_volume: Lesions of at most this volume (mm³; mm² in 2D) are left out (BraTS-GLI: 50).
        iou_thresholds: Detection thresholds in [0, 1): a lesion is detected when IoU > t.
        size_bands: Increasing volume edges (mm³) of the size strata: (10, 100, 1000) gives
            <10, 10-100, 100-1000, >=1000 (a band holds lower <= volume < upper).

    Raises:
        ConfigError: A value out of range.
    """

    connectivity: int | None = None
    dilation: int = 3
    max_hd95_mm: float = BRATS_MAX_HD95_MM
    min_volume: float = 0.0
    iou_thresholds: tuple[float, ...] = (0.0, 0.1, 0.5)
    size_bands: tuple[float, ...] = (10.0, 100.0, 1000.0)

    def __post_init__(self) -> None:
        ts = tuple(float(t) for t in self.iou_thresholds)
        bands = tuple(float(b) for b in self.size_bands)
        increasing = list(ts) == sorted(set(ts)) and list(bands) == sorted(set(bands))
        checks = [
            (self.connectivity in (None, 4, 6, 8, 18, 26), "connectivity", "6, 18, 26 (3D) or 4, 8 (2D)"),
            (int(self.dilation) == self.dilation >= 0, "dilation", "a whole number of voxels >= 0"),
            (0 < self.max_hd95_mm < math.inf, "max_hd95_mm", "a positive number of mm"),
            (0 <= self.min_volume < math.inf, "min_volume", "a number of mm3 >= 0"),
            (ts and all(0 <= t < 1 for t in ts), "iou_thresholds", "values in [0, 1)"),
            (all(0 < b < math.inf for b in bands), "size_bands", "volumes > 0 mm3"),
            (increasing, "iou_thresholds or size_bands", "increasing values without repeats"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"lesion setting {name} is not valid in {self}", hint=f"use {expected}")
        object.__setattr__(self, "dilation", int(self.dilation))
        object.__setattr__(self, "iou_thresholds", ts)
        object.__setattr__(self, "size_bands", bands)

    @classmethod
    def brats2023(cls, challenge: str = "GLI", **overrides: Any) -> LesionSettings:
        """The settings of a BraTS 2023 challenge (GLI, SSA, PED, MEN, MET), e.g. dilation 3 and
        lesions of at most 50 mm³ left out for GLI."""
        if challenge.upper() not in BRATS_2023:
            raise ConfigError(
                f"unknown BraTS 2023 challenge {challenge!r}", hint=f"use one of {list(BRATS_2023)}"
            )
        dilation, min_volume = BRATS_2023[challenge.upper()]
        return cls(**{"dilation": dilation, "min_volume": min_volume, **overrides})

    def connectivity_for(self, ndim: int) -> int:
        """The connectivity used on ``ndim``-dimensional masks."""
        conn = self.connectivity or (26 if ndim == 3 else 8)
        if conn not in ((6, 18, 26) if ndim == 3 else (4, 8)):
            raise ConfigError(
                f"connectivity {conn} does not apply to {ndim}D masks", hint="3D: 6, 18, 26; 2D: 4, 8"
            )
        return conn

    def band_names(self) -> list[str]:
        """Names of the size bands, smallest first (``<10``, ``10-100``, …, ``>=1000``)."""
        e = [f"{b:g}" for b in self.size_bands]
        if not e:
            return ["all"]
        return [f"<{e[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(e)] + [f">={e[-1]}"]

    def band_of(self, volume: float) -> str:
        """Name of the size band holding ``volume`` (mm³)."""
        return self.band_names()[int(np.searchsorted(self.size_bands, volume, side="right"))]


# -- components --------------------------------------------------------------------------
def _check_mask(array: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim not in (2, 3):
        raise ConfigError(f"{name} must be 2D or 3D, got shape {a.shape}", hint="pass one class of one case")
    if a.dtype != bool:
        if a.size and not np.isin(np.unique(a), (0, 1)).all():
            raise ConfigError(f"{name} is not a binary mask", hint="pass labels == k for class k")
        a = a.astype(bool)
    return a


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
    import cc3d

    m = _check_mask(mask, "mask")
    conn = LesionSettings(connectivity=connectivity).connectivity_for(m.ndim)
    labels, n = cc3d.connected_components(m, connectivity=conn, return_N=True)
    return labels, int(n)


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


# -- per case ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RefLesion:
    """One reference lesion: ``volume`` in mm³ (mm² in 2D), ``matched`` predicted component ids,
    and the Dice, IoU and HD95 (mm) between the lesion and the union of those components;
    ``hd95`` is ``max_hd95_mm`` when nothing is matched. ``ignored``: at most ``min_volume``."""

    id: int
    volume: float
    n_voxels: int
    matched: tuple[int, ...]
    dice: float
    iou: float
    hd95: float
    ignored: bool

    def detected(self, threshold: float) -> bool:
        """Whether the lesion counts and its IoU exceeds ``threshold``."""
        return not self.ignored and self.iou > threshold


@dataclass(frozen=True)
class PredLesion:
    """One predicted component: ``volume`` in mm³ (mm² in 2D) and the ``matched`` lesion ids."""

    id: int
    volume: float
    n_voxels: int
    matched: tuple[int, ...]

    @property
    def false_positive(self) -> bool:
        """Matched with no reference lesion (a BraTS false positive)."""
        return not self.matched


@dataclass(frozen=True)
class DetectionCounts:
    """Lesion detection counts at one IoU threshold, for one case or pooled over cases.

    ``sensitivity`` = detected / lesions, ``precision`` = true predicted components / predicted
    components (NaN when the denominator is 0), ``f1`` their harmonic mean: 1 when there is
    neither a lesion nor a predicted component, 0 when only one side is empty.
    """

    threshold: float
    n_ref: int
    n_detected: int
    n_pred: int
    n_pred_true: int
    n_cases: int = 1

    @property
    def sensitivity(self) -> float:
        return _nan_div(self.n_detected, self.n_ref)

    @property
    def precision(self) -> float:
        return _nan_div(self.n_pred_true, self.n_pred)

    @property
    def f1(self) -> float:
        if self.n_ref == 0 and self.n_pred == 0:
            return 1.0
        s, p = self.sensitivity, self.precision
        return 0.0 if math.isnan(s) or math.isnan(p) or s + p == 0 else 2 * s * p / (s + p)

    @property
    def n_fp(self) -> int:
        return self.n_pred - self.n_pred_true

    @property
    def fp_per_case(self) -> float:
        return self.n_fp / self.n_cases

    @classmethod
    def pooled(cls, counts: Sequence[DetectionCounts]) -> DetectionCounts:
        """Counts summed over cases (micro average) at one threshold."""
        return cls(
            counts[0].threshold,
            *(sum(getattr(c, k) for c in counts) for k in ("n_ref", "n_detected", "n_pred", "n_pred_true")),
            n_cases=sum(c.n_cases for c in counts),
        )

    def to_dict(self) -> dict[str, Any]:
        extra = ("sensitivity", "precision", "f1", "n_fp", "fp_per_case")
        return _json({**_plain(self), **{k: getattr(self, k) for k in extra}})


@dataclass(frozen=True)
class StratumCounts:
    """Detection sensitivity of the lesions of one size band (``lower <= volume < upper``, mm³)."""

    band: str
    lower: float
    upper: float
    threshold: float
    n_ref: int
    n_detected: int

    @property
    def sensitivity(self) -> float:
        return _nan_div(self.n_detected, self.n_ref)

    def to_dict(self) -> dict[str, Any]:
        return _json({**_plain(self), "sensitivity": self.sensitivity})


def _detection(refs: Sequence[RefLesion], preds: Sequence[PredLesion], t: float) -> DetectionCounts:
    counted = [r for r in refs if not r.ignored]
    detected = {r.id for r in counted if r.detected(t)}
    ignored = {r.id for r in refs if r.ignored}
    # components matched only with ignored lesions count neither way (BraTS: no false positive)
    scored = [p for p in preds if not p.matched or not set(p.matched) <= ignored]
    true = sum(1 for p in scored if detected & set(p.matched))
    return DetectionCounts(t, len(counted), len(detected), len(scored), true)


def _strata(refs: Sequence[RefLesion], settings: LesionSettings) -> list[StratumCounts]:
    edges = (0.0, *settings.size_bands, math.inf)
    out = []
    for name, lo, hi in zip(settings.band_names(), edges[:-1], edges[1:]):
        band = [r for r in refs if not r.ignored and lo <= r.volume < hi]
        for t in settings.iou_thresholds:
            out.append(StratumCounts(name, lo, hi, t, len(band), sum(r.detected(t) for r in band)))
    return out


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
