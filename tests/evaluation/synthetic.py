"""Synthetic label maps for evaluation tests: two smooth structures, a perturbed prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.io import write_volume
from medseg.volume import Volume

#: An anisotropic, axis-flipped (LPS-like) affine: spacing 0.7 x 0.9 x 2.5 mm.
AFFINE = np.array(
    [
        [-0.7, 0.0, 0.0, 40.0],
        [0.0, -0.9, 0.0, 25.0],
        [0.0, 0.0, 2.5, -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SHAPE = (30, 26, 14)


def label_pair(seed: int, shape: tuple[int, ...] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, reference)`` integer label maps with classes 1 and 2."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float64)
    size = np.array(shape, dtype=np.float64).reshape((-1,) + (1,) * len(shape))
    radius = np.sqrt((((grid - size / 2) / (size / 3.2)) ** 2).sum(axis=0))
    noise_r = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    noise_p = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    ref = np.zeros(shape, np.uint8)
    inside_r = radius + 0.6 * noise_r < 1.0
    ref[inside_r] = 1
    ref[inside_r & (grid[0] > shape[0] / 2)] = 2
    inside_p = radius + 0.6 * noise_r + 0.5 * noise_p < 1.0
    pred = np.zeros(shape, np.uint8)
    pred[inside_p] = 1
    pred[inside_p & (grid[0] > shape[0] / 2 + rng.integers(-1, 2))] = 2
    return pred, ref


def write_labels(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """Write a label map with ``affine`` (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(Volume(array, affine), path)
    return path


def write_dataset(root: Path, n_cases: int = 3, seed: int = 0) -> tuple[Path, Path]:
    """``root/pred`` and ``root/ref`` with ``n_cases`` cases ``case_000``..."""
    for n in range(n_cases):
        pred, ref = label_pair(seed + n)
        write_labels(root / "ref" / f"case_{n:03d}.nii.gz", ref)
        write_labels(root / "pred" / f"case_{n:03d}.nii.gz", pred)
    return root / "pred", root / "ref"
