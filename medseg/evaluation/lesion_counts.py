"""The records of lesion-wise evaluation: settings, one lesion, detection and size-band counts.

Used by :mod:`medseg.evaluation.lesions` (where the definitions are explained, BraTS 2023 and
Metrics Reloaded) and :mod:`medseg.evaluation.froc`. Every record has a JSON-able ``to_dict``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from medseg.errors import ConfigError

__all__ = [
    "BRATS_2023",
    "BRATS_MAX_HD95_MM",
    "DetectionCounts",
    "LesionSettings",
    "PredLesion",
    "RefLesion",
    "StratumCounts",
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
