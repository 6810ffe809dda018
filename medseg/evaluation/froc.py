"""FROC (free-response ROC) of lesion detection from probability maps.

Candidates are the connected components of a thresholded probability map, each scored by its
maximum probability; sweeping the score gives sensitivity against false positives per case, and
the FROC score is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per case
(LUNA16: Setio et al., "Validation, comparison, and combination of algorithms for automatic
detection of pulmonary nodules in computed tomography images: the LUNA16 challenge", Medical Image
Analysis 42, 2017). Lesions are those of :mod:`medseg.evaluation.lesions`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.evaluation.lesion_counts import LesionSettings, _json, _nan_div, _plain
from medseg.evaluation.lesions import (
    _check_pair,
    _check_spacing,
    _pairs,
    label_components,
    label_lesions,
)

log = logging.getLogger(__name__)

__all__ = ["LUNA16_FP_RATES", "FrocCase", "FrocPoint", "FrocResult", "froc", "lesion_candidates"]

#: False positives per case at which LUNA16 averages the sensitivity.
LUNA16_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class FrocCase:
    """Scored detection candidates of one case.

    Attributes:
        scores: Maximum probability of each candidate.
        hits: Ids of the (counted) lesions each candidate shares a voxel with; empty: false positive.
        n_lesions: Lesions counted in the case.
        threshold: Probability threshold the candidates were extracted at.
    """

    scores: tuple[float, ...]
    hits: tuple[tuple[int, ...], ...]
    n_lesions: int
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return _json(_plain(self))


def lesion_candidates(
    prob: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    threshold: float = 0.1,
    settings: LesionSettings | None = None,
) -> FrocCase:
    """Detection candidates of a probability map: components of ``prob >= threshold``, each scored
    by its maximum probability, and the reference lesions each one shares a voxel with.

    Lesions are those of :func:`label_lesions` with ``settings``; candidates touching only lesions
    of at most ``settings.min_volume`` are dropped (neither hit nor false positive).

    Args:
        prob: Foreground probability map in [0, 1], shape (X, Y, Z) or (X, Y).
        ref: Reference binary mask of the same shape.
        spacing: Voxel size in mm (for ``min_volume``).
        threshold: Candidate extraction threshold in (0, 1].

    Raises:
        ConfigError: ``prob`` outside [0, 1] or not 2D/3D; ``ref`` not binary.
        GeometryMismatchError: Different shapes.
        ConfigError: A threshold outside (0, 1].
    """
    from scipy import ndimage

    s = settings or LesionSettings()
    pm = np.asarray(prob, dtype=np.float64)
    if pm.size and not (np.isfinite(pm).all() and pm.min() >= 0.0 and pm.max() <= 1.0):
        raise ConfigError("probability map has values outside [0, 1]", hint="pass softmax/sigmoid output")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"candidate threshold must lie in (0, 1], got {threshold}", hint="e.g. 0.1")
    candidates, r = _check_pair(pm >= threshold, ref)
    sp = _check_spacing(spacing, r.ndim)
    comps, n = label_components(candidates, s.connectivity)
    lesions, _, n_ref = label_lesions(r, s.dilation, s.connectivity)
    volumes = np.bincount(lesions.ravel(), minlength=n_ref + 1) * float(np.prod(sp))
    ignored = {k for k in range(1, n_ref + 1) if volumes[k] <= s.min_volume}
    hits: dict[int, list[int]] = {c: [] for c in range(1, n + 1)}
    touched: dict[int, bool] = {}
    for c, k in _pairs(comps, lesions):
        touched[c] = True
        if k not in ignored:
            hits[c].append(k)
    maxima = ndimage.maximum(pm, comps, index=np.arange(1, n + 1)) if n else []
    keep = [c for c in range(1, n + 1) if hits[c] or not touched.get(c)]
    return FrocCase(
        tuple(float(maxima[c - 1]) for c in keep),
        tuple(tuple(hits[c]) for c in keep),
        n_ref - len(ignored),
        float(threshold),
    )


@dataclass(frozen=True)
class FrocPoint:
    """One operating point: candidates with score >= ``threshold`` over all cases."""

    threshold: float
    sensitivity: float
    fp_per_case: float
    n_detected: int
    n_fp: int


@dataclass(frozen=True)
class FrocResult:
    """FROC curve over cases and its score (mean sensitivity at ``fp_rates``; NaN without lesions)."""

    points: tuple[FrocPoint, ...]
    fp_rates: tuple[float, ...]
    sensitivities: tuple[float, ...]
    score: float
    n_cases: int
    n_lesions: int

    def to_dict(self) -> dict[str, Any]:
        return _json({**_plain(self), "points": [_plain(p) for p in self.points]})


def _sensitivity_at(points: Sequence[FrocPoint], rate: float) -> float:
    """Sensitivity at ``rate`` FPs per case on the curve from (0, 0) through the points, linear in
    between; at a rate reached by several points, the highest sensitivity."""
    path = sorted([(0.0, 0.0), *((p.fp_per_case, p.sensitivity) for p in points)])
    below = [q for q in path if q[0] <= rate]
    lo = max(below, key=lambda q: (q[0], q[1]))
    above = [q for q in path if q[0] > rate]
    if lo[0] == rate or not above:
        return lo[1]
    hi = min(above)
    return lo[1] + (hi[1] - lo[1]) * (rate - lo[0]) / (hi[0] - lo[0])


def froc(
    cases: Sequence[FrocCase],
    thresholds: Sequence[float] | None = None,
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
) -> FrocResult:
    """FROC of detection candidates over several cases (LUNA16 convention, Setio et al. 2017).

    A lesion is detected at threshold τ when a candidate with score >= τ shares a voxel with
    it; candidates hitting an already detected lesion are ignored, candidates hitting none are
    false positives. Sensitivity is pooled over all lesions of all cases; false positives are
    averaged over cases. The score is the mean sensitivity at ``fp_rates`` (1/8 … 8 FPs per
    case), interpolated linearly on the curve from (0, 0) through the operating points and
    constant beyond the last one. Thresholds below a case's candidate threshold give the
    point at that threshold.

    Args:
        cases: One :class:`FrocCase` per case (from :func:`lesion_candidates`).
        thresholds: Score thresholds; None: every distinct candidate score (the exact curve).
        fp_rates: False positives per case at which the sensitivity is averaged.

    Raises:
        ConfigError: No case.
        ConfigError: A threshold outside [0, 1] or a negative rate.
    """
    if not cases:
        raise ConfigError("FROC needs at least one case", hint="pass one lesion_candidates() per case")
    lesion_best: list[float] = []
    fp_scores: list[float] = []
    for case in cases:
        best: dict[int, float] = {}
        for score, hit in zip(case.scores, case.hits):
            fp_scores.extend([] if hit else [score])
            for k in hit:
                best[k] = max(best.get(k, -math.inf), score)
        lesion_best += list(best.values()) + [-math.inf] * (case.n_lesions - len(best))
    taus = sorted({s for case in cases for s in case.scores}, reverse=True)
    if thresholds is not None:
        taus = sorted({float(t) for t in thresholds}, reverse=True)
        if any(not 0.0 <= t <= 1.0 for t in taus):
            raise ConfigError(f"FROC thresholds must lie in [0, 1], got {taus}", hint="e.g. 0.1, 0.2, …, 0.9")
    if any(r < 0 for r in fp_rates):
        raise ConfigError(f"fp_rates must be >= 0, got {tuple(fp_rates)}", hint="LUNA16: 1/8 … 8")
    lb, fs = np.sort(lesion_best), np.sort(fp_scores)
    n, total = len(cases), len(lesion_best)
    points = []
    for t in taus:
        n_det = int(lb.size - np.searchsorted(lb, t, side="left"))
        n_fp = int(fs.size - np.searchsorted(fs, t, side="left"))
        points.append(FrocPoint(t, _nan_div(n_det, total), n_fp / n, n_det, n_fp))
    if total == 0:
        log.warning("FROC over %d cases without any lesion: the sensitivity is undefined", n)
        sens = [math.nan] * len(fp_rates)
    else:
        sens = [_sensitivity_at(points, float(r)) for r in fp_rates]
    score = float(np.mean(sens)) if sens else math.nan
    return FrocResult(tuple(points), tuple(float(r) for r in fp_rates), tuple(sens), score, n, total)
