"""Mask and spacing checks and surface voxels shared by the overlap, surface and boundary metrics
(:mod:`medseg.evaluation.metrics`, :mod:`medseg.evaluation.boundary`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Default band width (mm) of the boundary IoU (see :mod:`medseg.evaluation.boundary`).
DEFAULT_BAND_MM = 2.0


def _as_mask(array: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype == bool:
        return a
    if a.size and not np.isin(np.unique(a), (0, 1)).all():
        raise ValueError(f"{name} must be a boolean mask (or hold only 0 and 1); use labels == k for class k")
    return a.astype(bool)


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, r = _as_mask(pred, "pred"), _as_mask(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got {p.ndim} dimensions")
    return p, r


def _check_spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    sp = tuple(float(v) for v in (np.repeat(values, ndim) if np.ndim(spacing) == 0 else values))
    if len(sp) != ndim:
        raise ValueError(f"spacing needs one value per axis ({ndim}), got {sp}")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing values must be positive, got {sp}")
    return sp


# -- surfaces ----------------------------------------------------------------------------
def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a face-neighbour outside the mask (or outside the image).

    This is MONAI's edge definition (``binary_erosion(mask) ^ mask`` with scipy's
    default cross-shaped structuring element and a background border).
    """
    from scipy import ndimage

    m = _as_mask(mask, "mask")
    if not m.any():
        return np.zeros_like(m)
    eroded = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(m.ndim, 1), border_value=0)
    return m & ~eroded
