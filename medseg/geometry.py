"""Affine geometry helpers.

Conventions (used everywhere in medseg):

* An affine is a 4x4 matrix mapping voxel indices ``(i, j, k, 1)`` to world
  coordinates in millimetres, **RAS+** (x increases towards the patient's
  Right, y towards Anterior, z towards Superior), exactly as in NIfTI.
* DICOM and ITK use LPS+; the conversion is ``LPS_TO_RAS @ affine`` and happens
  once, in :mod:`medseg.io`, and nowhere else.
* Orientation codes name where each voxel axis *points to*, as nibabel's
  ``aff2axcodes``: ``"LAS"`` means i increases towards Left, j towards
  Anterior, k towards Superior.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Flips x and y: converts an LPS affine to RAS and back (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def as_affine(affine: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Validate and return ``affine`` as a float64 4x4 array."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {a.shape}")
    if not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"affine's last row must be [0, 0, 0, 1], got {a[3].tolist()}")
    if not np.all(np.isfinite(a)):
        raise ValueError("affine holds non-finite values")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError("affine is singular (zero spacing or parallel axes)")
    return a


def spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along i, j, k (the column norms of the 3x3 part)."""
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))  # type: ignore[return-value]


def direction(affine: np.ndarray) -> np.ndarray:
    """Unit direction of each voxel axis in RAS world space, as the columns of a 3x3 array."""
    return affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)


def origin(affine: np.ndarray) -> tuple[float, float, float]:
    """World position (RAS mm) of the centre of voxel (0, 0, 0)."""
    return tuple(float(v) for v in affine[:3, 3])  # type: ignore[return-value]


def orientation_code(affine: np.ndarray) -> str:
    """Three-letter code of the world direction closest to each voxel axis, e.g. ``"LPS"``."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine))


def is_oblique(affine: np.ndarray, tol: float = 1e-4) -> bool:
    """True when some voxel axis is not aligned with a world axis."""
    d = np.abs(direction(affine))
    return bool(np.any((d > tol) & (d < 1.0 - tol)))


def is_sheared(affine: np.ndarray, tol: float = 1e-4) -> bool:
    """True when the voxel axes are not mutually orthogonal."""
    d = direction(affine)
    g = d.T @ d
    return bool(np.max(np.abs(g - np.eye(3))) > tol)


def flip_axis_affine(affine: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Affine of the same grid after reversing voxel ``axis`` (of length ``size``)."""
    flip = np.eye(4)
    flip[axis, axis] = -1.0
    flip[axis, 3] = size - 1
    return affine @ flip


def world_corners(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """World coordinates (8x3) of the centres of the eight corner voxels of a grid."""
    nx, ny, nz = (int(s) for s in shape[:3])
    idx = np.array([[i, j, k, 1.0] for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])
    return (affine @ idx.T).T[:, :3]


def grid_distance(
    affine_a: np.ndarray, shape_a: Sequence[int], affine_b: np.ndarray, shape_b: Sequence[int]
) -> float:
    """Largest world distance (mm) between corresponding corner voxels of two grids,
    ``inf`` when the shapes differ. Zero means the grids are identical."""
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return float("inf")
    diff = world_corners(affine_a, shape_a) - world_corners(affine_b, shape_b)
    return float(np.max(np.linalg.norm(diff, axis=1)))


def same_grid(
    affine_a: np.ndarray,
    shape_a: Sequence[int],
    affine_b: np.ndarray,
    shape_b: Sequence[int],
    tol_mm: float = 1e-3,
) -> bool:
    """True when two grids have the same shape and every voxel lies within ``tol_mm``."""
    return grid_distance(affine_a, shape_a, affine_b, shape_b) <= tol_mm


def axis_permutation(affine_from: np.ndarray, affine_to: np.ndarray, tol: float = 1e-3) -> np.ndarray | None:
    """If grid ``from`` is grid ``to`` with voxel axes permuted and/or reversed, return
    nibabel's orientation array (``ornt``) mapping ``from`` onto ``to``; else None.

    The spacing must match too; the caller checks shapes and offsets with
    :func:`same_grid` after applying the result.
    """
    m = np.linalg.solve(affine_to[:3, :3], affine_from[:3, :3])  # from-voxel -> to-voxel
    r = np.rint(m)
    if np.max(np.abs(m - r)) > tol:
        return None
    if not np.allclose(np.abs(r).sum(axis=0), 1) or not np.allclose(np.abs(r).sum(axis=1), 1):
        return None
    ornt = np.zeros((3, 2))
    for src in range(3):
        dst = int(np.argmax(np.abs(r[:, src])))
        ornt[src] = (dst, np.sign(r[dst, src]))
    return ornt


def reorient_array(array: np.ndarray, affine: np.ndarray, target_codes: str) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip voxel axes (no interpolation) so the grid has orientation ``target_codes``.

    Returns the new array (a view where possible) and its affine; the world
    position of every voxel is unchanged. Axes beyond the third are carried along.
    """
    import nibabel.orientations as nio

    if len(target_codes) != 3:
        raise ValueError(f"target orientation must have 3 letters, got {target_codes!r}")
    start = nio.io_orientation(affine)
    end = nio.axcodes2ornt(tuple(target_codes.upper()))
    transform = nio.ornt_transform(start, end)
    new_array = nio.apply_orientation(array, transform)
    new_affine = affine @ nio.inv_ornt_aff(transform, array.shape[:3])
    return new_array, new_affine


def voxel_to_voxel(affine_from: np.ndarray, affine_to: np.ndarray) -> np.ndarray:
    """4x4 matrix mapping voxel indices of grid ``from`` to voxel indices of grid ``to``."""
    return np.linalg.solve(affine_to, affine_from)
