"""Choosing post-processing per class from out-of-fold predictions (nnU-Net's rule, made exact).

For each foreground class the candidates are: nothing; keep the largest component
(``keep_largest``); remove components under a volume (``min_size_mm3 = t``); and both. Each is
scored by the mean Dice of that class over the out-of-fold cases (1 where reference and
prediction are both empty, as :mod:`medseg.evaluation.metrics` counts it). Removing components
of one class only turns voxels into background, so each class is decided on its own.

The rule (Isensee et al., nnU-Net, Nature Methods 2021, section "Post-processing", with a stated
margin): a class gets the best candidate when it raises the class's mean out-of-fold Dice by more
than ``min_gain`` (default 0.001; never when it lowers it). Ties go to the simplest candidate, in
the order above: ``keep_largest`` has no tuned parameter, so it is preferred over a size
threshold that scores the same.

Thresholds: the Dice of ``min_size_mm3 = t`` only changes when ``t`` crosses the size of a
predicted component, so the candidates are placed between component sizes: just above the size
``s`` of each *spurious* component (one whose overlap with the reference is under half its size:
only removing those can raise the Dice, as removing a component of size ``s`` and overlap ``o``
helps exactly when ``o / s`` is below half the case's Dice), at the geometric mean of ``s`` and
the next larger component size, so that the same out-of-fold outcome keeps the widest margin.
With more than ``max_thresholds`` spurious sizes, quantiles of them are used.

Everything is computed from per-component counts (size, overlap with the reference), so the
search costs one connected-component labelling per case and class.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medseg.inference.postprocess import PostprocessOptions, component_structure

log = logging.getLogger(__name__)

#: The default margin: a candidate must raise a class's mean out-of-fold Dice by more than this.
MIN_GAIN = 0.001
#: At most this many size thresholds are tried per class.
MAX_THRESHOLDS = 16
FORMAT = "medseg-postprocessing/1"
RULE = (
    "per class, the candidate with the highest mean out-of-fold Dice (ties: none, keep_largest, then "
    "the smallest min_size_mm3) is applied when it beats no post-processing by more than min_gain"
)


@dataclass
class _Components:
    """One case and class: component sizes (voxels), their overlap with the reference, the
    reference's voxel count and the voxel volume (mm^3)."""

    sizes: np.ndarray
    overlap: np.ndarray
    n_ref: int
    voxel_mm3: float

    def dice(self, keep_largest: bool, min_size_mm3: float) -> float:
        keep = np.ones(self.sizes.size, dtype=bool)
        if keep_largest and self.sizes.size:
            keep[:] = False
            keep[int(np.argmax(self.sizes))] = True
        if min_size_mm3 > 0:
            keep &= self.sizes * self.voxel_mm3 >= min_size_mm3
        p = int(self.sizes[keep].sum())
        if p + self.n_ref == 0:
            return 1.0
        return 2.0 * float(self.overlap[keep].sum()) / (p + self.n_ref)


def _components(pred: np.ndarray, ref: np.ndarray, label: int, voxel_mm3: float) -> _Components:
    from scipy import ndimage

    comps, n = ndimage.label(pred == label, structure=component_structure(pred.ndim))
    sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
    overlap = np.bincount(comps[ref == label].ravel(), minlength=n + 1)[1:]
    return _Components(sizes, overlap, int(np.count_nonzero(ref == label)), voxel_mm3)


def size_thresholds(cases: Sequence[_Components], max_thresholds: int = MAX_THRESHOLDS) -> list[float]:
    """Candidate ``min_size_mm3`` values (ascending) from the components of one class (module doc)."""
    spurious, every = [], []
    for c in cases:
        mm3 = c.sizes * c.voxel_mm3
        every.extend(mm3.tolist())
        spurious.extend(mm3[c.overlap * 2 < c.sizes].tolist())
    if not spurious:
        return []
    sizes = np.unique(np.asarray(spurious, dtype=float))
    if sizes.size > max_thresholds:
        sizes = np.unique(np.quantile(sizes, np.linspace(0, 1, max_thresholds), method="nearest"))
    every_sorted = np.unique(np.asarray(every, dtype=float))
    out = []
    for s in sizes:
        larger = every_sorted[every_sorted > s]
        out.append(float(np.sqrt(s * larger[0])) if larger.size else float(2 * s))
    return sorted(set(out))


@dataclass
class ClassChoice:
    """What was decided for one class: the chosen options and the mean out-of-fold Dice of each
    candidate (``candidates``: ``[{keep_largest, min_size_mm3, dice}]``, no post-processing first)."""

    label: int
    name: str
    chosen: PostprocessOptions
    dice_before: float
    dice_after: float
    n_cases: int
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "applied": self.chosen.active,
            "keep_largest": self.chosen.keep_largest,
            "min_size_mm3": self.chosen.min_size_mm3,
            "dice_before": round(self.dice_before, 6),
            "dice_after": round(self.dice_after, 6),
            "n_cases": self.n_cases,
            "candidates": self.candidates,
        }


def choose_for_class(
    cases: Sequence[_Components], label: int, name: str, min_gain: float, max_thresholds: int
) -> ClassChoice:
    """The choice for one class from its per-case components (rule in the module doc)."""
    options = [(False, 0.0), (True, 0.0)]
    thresholds = size_thresholds(cases, max_thresholds)
    options += [(False, t) for t in thresholds] + [(True, t) for t in thresholds]
    scores = [float(np.mean([c.dice(k, t) for c in cases])) if cases else 1.0 for k, t in options]
    best = int(np.argmax(scores))  # the first of equal scores: the simplest
    before = scores[0]
    if scores[best] <= before + min_gain:
        best = 0
    keep, t = options[best]
    return ClassChoice(
        label,
        name,
        PostprocessOptions(keep_largest=keep, min_size_mm3=t),
        before,
        scores[best],
        len(cases),
        [
            {"keep_largest": k, "min_size_mm3": round(m, 6), "dice": round(s, 6)}
            for (k, m), s in zip(options, scores)
        ],
    )


@dataclass
class PostprocessSelection:
    """The per-class choices (:class:`ClassChoice`) and the rule they followed."""

    classes: dict[int, ClassChoice]
    min_gain: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> PostprocessOptions:
        """The choices as options for :func:`~medseg.inference.postprocess.postprocess`."""
        return PostprocessOptions(per_class={k: c.chosen for k, c in self.classes.items() if c.chosen.active})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rule": RULE,
            "min_gain": self.min_gain,
            **self.extra,
            "classes": {str(k): c.to_dict() for k, c in sorted(self.classes.items())},
            "options": self.options.to_dict(),
        }


def select_postprocessing(
    cases: Iterable[tuple[np.ndarray, np.ndarray, Sequence[float]]],
    labels: Mapping[int, str],
    min_gain: float = MIN_GAIN,
    max_thresholds: int = MAX_THRESHOLDS,
) -> PostprocessSelection:
    """Choose post-processing per class from out-of-fold predictions.

    Args:
        cases: ``(prediction, reference, spacing)`` per case: integer label maps ``[*S]`` (2D or
            3D) on one grid, and the spacing in mm (the source grid's, as
            :func:`~medseg.inference.postprocess.postprocess` gets it).
        labels: The foreground classes to decide ``{label: name}`` (background 0 is skipped).
        min_gain: The margin of mean Dice a candidate must beat no post-processing by (>= 0).
        max_thresholds: At most this many ``min_size_mm3`` candidates per class.

    Returns:
        The :class:`PostprocessSelection` (its ``options`` apply the choices).

    Raises:
        ValueError: a negative ``min_gain``, or a prediction and reference of different shapes.
    """
    if min_gain < 0:
        raise ValueError(f"min_gain must be >= 0, got {min_gain}")
    wanted = {int(k): str(v) for k, v in labels.items() if int(k) != 0}
    per_class: dict[int, list[_Components]] = {k: [] for k in wanted}
    n = 0
    for pred, ref, spacing in cases:
        if pred.shape != ref.shape:
            raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
        voxel_mm3 = float(np.prod(list(spacing)[: pred.ndim]))
        for k in wanted:
            per_class[k].append(_components(pred, ref, k, voxel_mm3))
        n += 1
    choices = {
        k: choose_for_class(per_class[k], k, wanted[k], min_gain, max_thresholds) for k in sorted(wanted)
    }
    for c in choices.values():
        log.info(
            "post-processing of %s (%d): %s (mean Dice %.4f -> %.4f over %d cases)",
            c.name, c.label, c.chosen.to_dict() if c.chosen.active else "none", c.dice_before,
            c.dice_after, n,
        )  # fmt: skip
    return PostprocessSelection(choices, float(min_gain))
