"""Label-map postprocessing on the source grid (physical sizes from the spacing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PostprocessOptions:
    """What to do to each class of a predicted label map (all off by default).

    Attributes:
        keep_largest: Keep only the largest connected component of each class.
        min_size_mm3: Remove components smaller than this volume (mm^3).
        fill_holes: Fill holes inside each class (slice-independent 3D filling).
    """

    keep_largest: bool = False
    min_size_mm3: float = 0.0
    fill_holes: bool = False

    def __post_init__(self) -> None:
        if self.min_size_mm3 < 0:
            raise ValueError(f"min_size_mm3 must be >= 0, got {self.min_size_mm3}")

    @property
    def active(self) -> bool:
        return self.keep_largest or self.min_size_mm3 > 0 or self.fill_holes

    def to_dict(self) -> dict:
        return asdict(self)


def postprocess(labels: np.ndarray, spacing: tuple[float, ...], options: PostprocessOptions) -> np.ndarray:
    """Apply ``options`` class by class (26-connectivity in 3D, 8 in 2D); returns a new array."""
    if not options.active:
        return labels
    from scipy import ndimage  # only when there is something to do

    out = labels.copy()
    voxel_mm3 = float(np.prod(spacing[: labels.ndim]))
    structure = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    for cls in [int(c) for c in np.unique(labels) if c != 0]:
        mask = out == cls
        comps, n = ndimage.label(mask, structure=structure)
        if n:
            sizes = np.bincount(comps.ravel())[1:]
            keep = np.ones(n, dtype=bool)
            if options.keep_largest:
                keep[:] = False
                keep[int(np.argmax(sizes))] = True
            if options.min_size_mm3 > 0:
                keep &= sizes * voxel_mm3 >= options.min_size_mm3
            removed = np.isin(comps, np.flatnonzero(~keep) + 1)
            out[removed] = 0
            mask &= ~removed
        if options.fill_holes:
            filled = ndimage.binary_fill_holes(mask)
            out[filled & (out == 0)] = cls
    return out
