"""Patch sampling for training: foreground oversampling plus augmentation, reproducible.

The randomness of sample ``i`` of epoch ``e`` on rank ``r`` comes from a NumPy
generator seeded with ``(seed, e, r, i)``: the stream of patches does not depend
on worker processes or scheduling, so a resumed run sees the same patches as an
uninterrupted one, and ranks see disjoint draws.

Foreground patches are centred either on a labelled voxel of a uniformly drawn class
(``foreground_sampling="voxel"``, nnU-Net, Isensee et al., Nature Methods 2021) or on a voxel
of a uniformly drawn lesion, a connected component of the case's foreground (``"lesion"``),
so that a 10-voxel lesion is drawn as often as a 10,000-voxel one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from medseg.transforms.augmentation import Augmenter

log = logging.getLogger(__name__)

#: Voxels kept per lesion to draw centres from (a sample is enough).
LESION_VOXELS = 2000


class TrainingCase:
    """A preprocessed case held in memory with the voxel lists of each class.

    ``class_voxels`` maps each label value to flat voxel indices (at most 20,000, sampled);
    :attr:`lesion_voxels` (computed on first use) lists the voxels of each lesion.
    """

    def __init__(self, case_id: str, image: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> None:
        self.id = case_id
        self.image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        self.label = torch.from_numpy(np.ascontiguousarray(label, dtype=np.uint8))
        self.spacing = [float(s) for s in spacing]
        flat = label.reshape(-1)
        classes = [int(c) for c in np.unique(flat) if c > 0]
        rng = np.random.default_rng(0)
        self.class_voxels: dict[int, np.ndarray] = {}
        for c in classes:
            idx = np.flatnonzero(flat == c)
            if idx.size > 20000:  # a sample is enough to pick centres from
                idx = np.sort(rng.choice(idx, 20000, replace=False))
            self.class_voxels[c] = idx
        self._lesion_voxels: list[np.ndarray] | None = None

    @property
    def lesion_voxels(self) -> list[np.ndarray]:
        """Flat voxel indices of each lesion (at most :data:`LESION_VOXELS` each, sampled, sorted).

        Lesions are the connected components of ``label > 0`` (all classes together; ``cc3d``,
        26-connectivity in 3D, 8 in 2D), computed once, on first use. Empty without foreground.
        """
        if self._lesion_voxels is None:
            self._lesion_voxels = _lesion_voxels(self.label.numpy())
        return self._lesion_voxels


def _lesion_voxels(label: np.ndarray) -> list[np.ndarray]:
    """Flat indices of each connected component of ``label > 0`` (sampled past LESION_VOXELS)."""
    from medseg.transforms.components import connected_components

    mask = label > 0
    if not mask.any():
        return []
    comp, n = connected_components(mask if mask.ndim > 1 else mask[None])
    flat = comp.reshape(-1)
    idx = np.flatnonzero(flat)
    order = np.argsort(flat[idx], kind="stable")
    idx = idx[order]
    counts = np.bincount(flat[idx].astype(np.int64), minlength=n + 1)[1:]
    rng = np.random.default_rng(0)
    lesions = []
    for part in np.split(idx, np.cumsum(counts)[:-1]):
        if part.size > LESION_VOXELS:
            part = np.sort(rng.choice(part, LESION_VOXELS, replace=False))
        lesions.append(part)
    return lesions


class PatchDataset(torch.utils.data.Dataset):
    """``len = samples_per_epoch``; item ``i`` is (image [C, *patch], label [*patch]) for the current epoch.

    Args:
        cases: Training cases (3D arrays: image ``[C, X, Y, Z]``, label ``[X, Y, Z]``).
        patch_size: Patch size; 2 sizes for 2D models (slices are taken along ``slice_axis``).
        samples_per_epoch: Patches per epoch on this rank.
        augmenter: Per-patch augmentation.
        foreground_oversample: Share of patches centred on a labelled voxel.
        foreground_sampling: How a foreground centre is drawn: ``"voxel"``, a uniform voxel of a
            uniformly drawn class; ``"lesion"``, a uniform voxel of a uniformly drawn lesion.
        seed: Base seed; ``set_epoch`` selects the epoch; ``rank`` the process.
        slice_axis: For 2D patches from 3D cases, the axis slices are taken along.

    Raises:
        ValueError: no cases, or an unknown ``foreground_sampling``.
    """

    def __init__(
        self,
        cases: list[TrainingCase],
        patch_size: Sequence[int],
        samples_per_epoch: int,
        augmenter: Augmenter,
        foreground_oversample: float = 0.33,
        seed: int = 0,
        rank: int = 0,
        slice_axis: int = 2,
        foreground_sampling: Literal["voxel", "lesion"] = "voxel",
    ) -> None:
        if not cases:
            raise ValueError("no training cases")
        if foreground_sampling not in ("voxel", "lesion"):
            raise ValueError(f"foreground_sampling must be 'voxel' or 'lesion', got {foreground_sampling!r}")
        self.cases = cases
        self.patch_size = [int(p) for p in patch_size]
        self.nd = len(self.patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.augmenter = augmenter
        self.oversample = float(foreground_oversample)
        self.seed = int(seed)
        self.rank = int(rank)
        self.slice_axis = int(slice_axis)
        self.epoch = 0
        self.foreground_sampling = foreground_sampling
        if foreground_sampling == "lesion":  # once, here, before any worker process copies the cases
            n = sum(len(c.lesion_voxels) for c in cases)
            log.info("lesion sampling: %d lesions in %d cases", n, len(cases))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, self.rank, int(index)])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng_for(index)
        case = self.cases[int(rng.integers(len(self.cases)))]
        shape = case.label.shape
        center = None
        if case.class_voxels and rng.random() < self.oversample:
            if self.foreground_sampling == "lesion" and case.lesion_voxels:
                voxels = case.lesion_voxels[int(rng.integers(len(case.lesion_voxels)))]
            else:
                cls = list(case.class_voxels)[int(rng.integers(len(case.class_voxels)))]
                voxels = case.class_voxels[cls]
            center = np.array(np.unravel_index(int(voxels[rng.integers(voxels.size)]), shape), dtype=float)
        if center is None:
            center = np.array([rng.uniform(0, s - 1) if s > 1 else 0.0 for s in shape])
            center = np.floor(center + 0.5)
        image, label = case.image, case.label
        spacing = case.spacing
        if self.nd == 2:  # a slice through the centre, along slice_axis
            k = int(center[self.slice_axis])
            image = image.select(self.slice_axis + 1, k)
            label = label.select(self.slice_axis, k)
            center = np.delete(center, self.slice_axis)
            spacing = [s for a, s in enumerate(spacing) if a != self.slice_axis]
        img, lab, _ = self.augmenter(image, label, center, rng, spacing)
        return img.contiguous(), lab.long().contiguous()
