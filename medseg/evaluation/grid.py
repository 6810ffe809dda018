"""The grid a label map is measured on: the measured axes, their spacing, and the grid check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg import geometry
from medseg.errors import GeometryMismatchError
from medseg.volume import Volume

__all__ = ["GRID_TOLERANCE_MM", "check_grid", "label_boxes", "spatial_plane", "squeeze_plane"]

#: Largest voxel offset (mm) at which a prediction counts as being on the reference grid.
GRID_TOLERANCE_MM = 1e-3


def spatial_plane(volume: Volume) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The axes a label map is measured on, and their spacing.

    A grid with exactly one axis of length 1 (a 2D image or a single slice) is measured
    in 2D on its other two axes: in 3D every voxel of a single slice would be "surface".
    """
    shape = volume.spatial_shape
    keep = tuple(ax for ax in range(3) if shape[ax] > 1)
    axes = keep if len(keep) == 2 else (0, 1, 2)
    spacing = volume.spacing
    return axes, tuple(spacing[ax] for ax in axes)


def squeeze_plane(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``array`` ``[X, Y, Z, ...]`` restricted to the measured ``axes`` (see :func:`spatial_plane`)."""
    if len(axes) == 3:
        return array
    drop = next(ax for ax in range(3) if ax not in axes)
    return np.take(array, 0, axis=drop)


def check_grid(pred: Volume, ref: Volume, pred_path: Path | str, ref_path: Path | str) -> None:
    """Raise :class:`GeometryMismatchError` unless ``pred`` lies on ``ref``'s grid (within 1 µm)."""
    distance = geometry.grid_distance(pred.affine, pred.spatial_shape, ref.affine, ref.spatial_shape)
    if distance <= GRID_TOLERANCE_MM:
        return
    if pred.spatial_shape != ref.spatial_shape:
        detail = f"shape {pred.spatial_shape} vs {ref.spatial_shape}"
    else:
        sp_p = ", ".join(f"{s:.4g}" for s in pred.spacing)
        sp_r = ", ".join(f"{s:.4g}" for s in ref.spacing)
        detail = f"voxels up to {distance:.3g} mm apart (spacing {sp_p} vs {sp_r} mm)"
    raise GeometryMismatchError(
        f"prediction {pred_path} is not on the grid of reference {ref_path}: {detail}",
        hint="pass --resample-pred to resample the prediction onto the reference grid (nearest neighbour)",
    )


def label_boxes(pred: np.ndarray, ref: np.ndarray, labels: list[int]) -> dict[int, tuple[slice, ...] | None]:
    """Per label, the bounding box ``[*S]`` of its voxels in both integer maps (None when absent
    from both): measuring inside it leaves every metric unchanged and keeps small structures in
    large scans cheap."""
    from scipy import ndimage

    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    top = max(labels, default=0)
    boxes_p = ndimage.find_objects(pred, max_label=top) if top else []
    boxes_r = ndimage.find_objects(ref, max_label=top) if top else []
    out: dict[int, tuple[slice, ...] | None] = {}
    for label in labels:
        bp, br = boxes_p[label - 1], boxes_r[label - 1]
        if bp is None or br is None:
            out[label] = bp or br
        else:
            out[label] = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(bp, br))
    return out
