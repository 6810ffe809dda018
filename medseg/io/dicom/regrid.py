"""Resample a stack of parallel slices with uneven spacing and/or gantry tilt onto a
regular, orthogonal grid.

The slices are parallel planes (same row/column directions) whose positions
are not evenly spaced along the slice normal and/or are shifted in-plane from
one slice to the next (a gantry-tilted CT is stacked along the table, not
along the normal). The output grid keeps the in-plane axes and pixel size,
takes the slice normal as third axis, and covers every input pixel. Each
output slice is interpolated linearly between the two input planes around it
(in-plane bilinear, through-plane linear), in world coordinates, so no voxel
is placed by index alone.
"""

from __future__ import annotations

import numpy as np


def regular_grid_for(
    positions: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    normal: np.ndarray,
    n_cols: int,
    n_rows: int,
    col_spacing: float,
    row_spacing: float,
    out_spacing: float | None = None,
) -> tuple[tuple[int, int, int], np.ndarray, dict[str, np.ndarray]]:
    """The output grid (shape and LPS affine for axes [column, row, slice]) and the
    per-slice in-plane offsets and depths needed by :func:`resample_stack`."""
    origin = positions[0]
    rel = positions - origin
    u0 = rel @ row_dir
    v0 = rel @ col_dir
    w = rel @ normal
    if np.any(np.diff(w) <= 0):
        raise ValueError("slice positions must be strictly increasing along the normal")
    s = float(out_spacing) if out_spacing else float(np.median(np.diff(w)))
    if s <= 0:
        raise ValueError(f"output slice spacing must be positive, got {s}")
    u_min, u_max = u0.min(), u0.max() + (n_cols - 1) * col_spacing
    v_min, v_max = v0.min(), v0.max() + (n_rows - 1) * row_spacing
    ni = int(np.floor((u_max - u_min) / col_spacing + 1e-6)) + 1
    nj = int(np.floor((v_max - v_min) / row_spacing + 1e-6)) + 1
    nk = int(np.floor((w[-1] - w[0]) / s + 1e-6)) + 1
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = normal * s
    affine[:3, 3] = origin + u_min * row_dir + v_min * col_dir
    offsets = {
        "i": (u_min - u0) / col_spacing,  # input column index of output column 0, per slice
        "j": (v_min - v0) / row_spacing,
        "w": w,
        "s": np.array([s]),
    }
    return (ni, nj, nk), affine, offsets


def resample_stack(
    slices: np.ndarray,
    shape: tuple[int, int, int],
    offsets: dict[str, np.ndarray],
    fill: float,
) -> np.ndarray:
    """Resample ``slices`` (shape ``[n_cols, n_rows, n_slices]``) onto the grid of
    :func:`regular_grid_for`. Returns float32 of ``shape``."""
    from scipy import ndimage

    ni, nj, nk = shape
    w = offsets["w"]
    s = float(offsets["s"][0])
    nz = slices.shape[2]
    out = np.empty(shape, dtype=np.float32)
    cache: dict[int, np.ndarray] = {}

    def sampled(k: int) -> np.ndarray:
        if k not in cache:
            if len(cache) > 2:
                cache.pop(min(cache))
            cache[k] = ndimage.affine_transform(
                slices[:, :, k].astype(np.float32),
                matrix=np.ones(2),
                offset=(offsets["i"][k], offsets["j"][k]),
                output_shape=(ni, nj),
                order=1,
                mode="constant",
                cval=fill,
            )
        return cache[k]

    for m in range(nk):
        depth = w[0] + m * s
        k = int(np.clip(np.searchsorted(w, depth, side="right") - 1, 0, max(nz - 2, 0)))
        if nz == 1:
            out[:, :, m] = sampled(0)
            continue
        t = float(np.clip((depth - w[k]) / (w[k + 1] - w[k]), 0.0, 1.0))
        if t <= 1e-6:
            out[:, :, m] = sampled(k)
        elif t >= 1 - 1e-6:
            out[:, :, m] = sampled(k + 1)
        else:
            out[:, :, m] = (1.0 - t) * sampled(k) + t * sampled(k + 1)
    return out
