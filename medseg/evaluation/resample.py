"""Putting one volume onto another volume's voxel grid (world-space resampling)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg import geometry
from medseg.volume import Volume

__all__ = ["resample_to_grid"]


def resample_to_grid(
    volume: Volume, affine: np.ndarray, shape: Sequence[int], order: int = 0, fill: float = 0.0
) -> Volume:
    """Resample ``volume`` onto the grid ``(affine, shape)``.

    Each target voxel takes the value at its world position in ``volume``:
    nearest neighbour (``order=0``, for label maps: labels are never blended) or
    linear (``order=1``, for images). Positions outside ``volume`` get ``fill``.

    Args:
        volume: The 3D volume to resample.
        affine: Target 4x4 voxel-to-world affine (RAS mm).
        shape: Target spatial shape (3 values).
        order: Interpolation order, 0 or 1.
        fill: Value outside the source volume.
    """
    from scipy import ndimage

    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")
    if volume.array.ndim != 3:
        raise ValueError(f"only 3D volumes can be resampled, got shape {volume.shape}")
    target_shape = tuple(int(s) for s in shape[:3])
    target_affine = geometry.as_affine(affine)
    if geometry.same_grid(volume.affine, volume.spatial_shape, target_affine, target_shape, tol_mm=1e-6):
        return Volume(volume.array.copy(), target_affine, volume.meta)
    # target voxel index -> source voxel index
    mapping = geometry.voxel_to_voxel(target_affine, volume.affine)
    source = volume.array
    if order == 1 and not np.issubdtype(source.dtype, np.floating):
        source = source.astype(np.float32)
    out = ndimage.affine_transform(
        source,
        mapping[:3, :3],
        offset=mapping[:3, 3],
        output_shape=target_shape,
        order=order,
        mode="constant",
        cval=fill,
        prefilter=False,
    )
    return Volume(out, target_affine, volume.meta)
