"""Edge-aligned resampling between a grid and a finer or coarser version of it.

A grid of ``n`` voxels is resampled to ``m`` voxels covering the same extent:
new voxel ``i'`` sits at old voxel coordinate ``(i' + 0.5) * n / m - 0.5``.
The mapping is exact and its inverse is the same formula with ``n`` and ``m``
swapped, so a mask predicted on the resampled grid goes back onto the source
grid voxel for voxel (no half-voxel shifts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float | None]
) -> tuple[int, ...]:
    """Shape that gives voxels of about ``target`` mm (None keeps an axis)."""
    out = []
    for n, s, t in zip(shape, spacing, target):
        out.append(int(n) if t is None else max(1, int(round(n * s / t))))
    return tuple(out)


def index_map(n_from: int, n_to: int) -> tuple[float, float]:
    """(scale, offset) so that coordinate_in_from = scale * index_in_to + offset."""
    scale = n_from / n_to
    return scale, 0.5 * scale - 0.5


def resample_array(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample the first ``len(shape)`` axes of ``array`` to ``shape`` (edge-aligned).

    ``order`` 0 is nearest neighbour (labels), 1 linear, 3 cubic spline. Extra trailing
    axes (channels) are resampled independently.
    """
    nd = len(shape)
    src = array.shape[:nd]
    if tuple(src) == tuple(shape):
        return array
    from scipy import ndimage  # not before: scans already on the target grid never load it (~0.2 s)

    scales, offsets = zip(*(index_map(a, b) for a, b in zip(src, shape)))
    if array.ndim > nd:
        flat = array.reshape(*src, -1)
        chans = [resample_array(flat[..., c], shape, order) for c in range(flat.shape[-1])]
        return np.stack(chans, axis=-1).reshape(*shape, *array.shape[nd:])
    out_dtype = array.dtype if order == 0 else np.float32
    return ndimage.affine_transform(
        array.astype(out_dtype, copy=False) if order else array,
        matrix=np.array(scales),
        offset=np.array(offsets),
        output_shape=tuple(shape),
        order=order,
        mode="nearest",
        prefilter=order > 1,
    ).astype(out_dtype, copy=False)


def resampled_affine(affine: np.ndarray, shape_from: Sequence[int], shape_to: Sequence[int]) -> np.ndarray:
    """Affine of the resampled grid (same extent, edge-aligned)."""
    m = np.eye(4)
    for ax, (a, b) in enumerate(zip(shape_from, shape_to)):
        scale, offset = index_map(a, b)
        m[ax, ax] = scale
        m[ax, 3] = offset
    return affine @ m
