"""Label-map postprocessing on the source grid (physical sizes from the spacing).

The options apply to every class alike, unless ``per_class`` gives a class its own (what
cross-validation chose for a multi-fold run, :mod:`medseg.inference.postprocess_selection`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PostprocessOptions:
    """What to do to each class of a predicted label map (all off by default).

    Attributes:
        keep_largest: Keep only the largest connected component of each class.
        min_size_mm3: Remove components smaller than this volume (mm^3).
        fill_holes: Fill holes inside each class (slice-independent 3D filling).
        per_class: Options of single classes ``{label: PostprocessOptions}`` (without a
            ``per_class`` of their own); the three fields above apply to the other classes.

    Raises:
        ValueError: a negative ``min_size_mm3``, a class below 1, or nested ``per_class``.
    """

    keep_largest: bool = False
    min_size_mm3: float = 0.0
    fill_holes: bool = False
    per_class: Mapping[int, PostprocessOptions] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.min_size_mm3 < 0:
            raise ValueError(f"min_size_mm3 must be >= 0, got {self.min_size_mm3}")
        for label, options in self.per_class.items():
            if int(label) < 1:
                raise ValueError(f"per-class post-processing names class {label}; classes start at 1")
            if options.per_class:
                raise ValueError("the options of one class cannot hold per_class options themselves")

    def for_class(self, label: int) -> PostprocessOptions:
        """The options that apply to class ``label``."""
        own = self.per_class.get(int(label))
        if own is not None:
            return own
        return PostprocessOptions(self.keep_largest, self.min_size_mm3, self.fill_holes)

    @property
    def active(self) -> bool:
        own = self.keep_largest or self.min_size_mm3 > 0 or self.fill_holes
        return own or any(o.active for o in self.per_class.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keep_largest": self.keep_largest,
            "min_size_mm3": self.min_size_mm3,
            "fill_holes": self.fill_holes,
        }
        if self.per_class:
            out["per_class"] = {str(k): v.to_dict() for k, v in sorted(self.per_class.items())}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PostprocessOptions:
        """The inverse of :meth:`to_dict` (``per_class`` keys may be strings)."""
        per_class = {int(k): cls.from_dict(v) for k, v in (data.get("per_class") or {}).items()}
        return cls(
            bool(data.get("keep_largest", False)),
            float(data.get("min_size_mm3", 0.0)),
            bool(data.get("fill_holes", False)),
            per_class,
        )


def component_structure(ndim: int) -> np.ndarray:
    """The connectivity of components: full (26 neighbours in 3D, 8 in 2D)."""
    from scipy import ndimage

    return ndimage.generate_binary_structure(ndim, ndim)


def postprocess(labels: np.ndarray, spacing: tuple[float, ...], options: PostprocessOptions) -> np.ndarray:
    """Apply ``options`` class by class (26-connectivity in 3D, 8 in 2D); returns a new array."""
    if not options.active:
        return labels
    from scipy import ndimage  # only when there is something to do

    out = labels.copy()
    voxel_mm3 = float(np.prod(spacing[: labels.ndim]))
    structure = component_structure(labels.ndim)
    for cls in [int(c) for c in np.unique(labels) if c != 0]:
        opts = options.for_class(cls)
        if not opts.active:
            continue
        mask = out == cls
        comps, n = ndimage.label(mask, structure=structure)
        if n:
            sizes = np.bincount(comps.ravel())[1:]
            keep = np.ones(n, dtype=bool)
            if opts.keep_largest:
                keep[:] = False
                keep[int(np.argmax(sizes))] = True
            if opts.min_size_mm3 > 0:
                keep &= sizes * voxel_mm3 >= opts.min_size_mm3
            removed = np.isin(comps, np.flatnonzero(~keep) + 1)
            out[removed] = 0
            mask &= ~removed
        if opts.fill_holes:
            filled = ndimage.binary_fill_holes(mask)
            out[filled & (out == 0)] = cls
    return out
