"""MR intensity normalisation: z-score over the foreground and percentile clipping."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class ForegroundMode(str, Enum):
    """How the foreground used for normalisation statistics is chosen."""

    ALL = "all"  # every voxel
    NONZERO = "nonzero"  # voxels != 0 (skull-stripped or cropped MR)
    OTSU = "otsu"  # voxels above Otsu's threshold (background air excluded)


def foreground_mask(array: np.ndarray, mode: ForegroundMode | str = "otsu") -> np.ndarray:
    """Boolean mask of the voxels whose statistics drive normalisation."""
    mode = ForegroundMode(mode)
    a = np.asarray(array)
    if mode is ForegroundMode.ALL:
        return np.ones(a.shape, dtype=bool)
    if mode is ForegroundMode.NONZERO:
        return a != 0
    from skimage.filters import threshold_otsu

    finite = a[np.isfinite(a)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.ones(a.shape, dtype=bool)
    return a > threshold_otsu(finite)


def zscore_normalize(
    array: np.ndarray,
    mask: np.ndarray | None = None,
    foreground: ForegroundMode | str = "otsu",
    outside: float | None = None,
    eps: float = 1e-8,
) -> np.ndarray:
    """Subtract the foreground mean and divide by its standard deviation (float32).

    Args:
        array: Intensities.
        mask: Voxels to compute statistics over; default from ``foreground``.
        foreground: Mode for the default mask (see :class:`ForegroundMode`).
        outside: If given, voxels outside the mask are set to this value.
        eps: Added to the standard deviation to avoid dividing by zero.
    """
    a = np.asarray(array, dtype=np.float32)
    m = foreground_mask(a, foreground) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != a.shape:
        raise ValueError(f"mask shape {m.shape} does not match array shape {a.shape}")
    values = a[m] if m.any() else a.ravel()
    mean, std = float(values.mean()), float(values.std())
    out = (a - np.float32(mean)) / np.float32(std + eps)
    if outside is not None:
        out[~m] = outside
    return out


def percentile_clip(
    array: np.ndarray,
    lower: float = 0.5,
    upper: float = 99.5,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Clip to the ``lower``/``upper`` percentiles (over ``mask`` when given)."""
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
    a = np.asarray(array)
    values = a[np.asarray(mask, dtype=bool)] if mask is not None else a
    lo, hi = np.percentile(values, [lower, upper])
    return np.clip(a, lo, hi)


@dataclass(frozen=True)
class ZScoreNormalize:
    """Callable form of :func:`zscore_normalize`."""

    foreground: ForegroundMode | str = "otsu"
    outside: float | None = None

    def __post_init__(self) -> None:
        ForegroundMode(self.foreground)

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return zscore_normalize(array, foreground=self.foreground, outside=self.outside)


@dataclass(frozen=True)
class PercentileClip:
    """Callable form of :func:`percentile_clip`."""

    lower: float = 0.5
    upper: float = 99.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower < self.upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {self.lower}, {self.upper}")

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return percentile_clip(array, self.lower, self.upper)
