"""Spatial augmentation fused with patch extraction.

A patch is read from the whole case through one sampling grid that combines
the patch position, a rotation and scaling about the patch centre (in
physical space, so anisotropic voxels are handled), an elastic displacement
field and flips. Image channels are interpolated linearly, labels by nearest
neighbour, so image and label stay aligned voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class SpatialParams:
    """Deterministic spatial transform of one patch (the twin of the random one)."""

    rotation: list[float] = field(default_factory=list)  # radians: 1 angle in 2D, 3 Euler angles in 3D
    scale: float = 1.0  # > 1 zooms out (the patch covers more of the case)
    elastic: np.ndarray | None = None  # control-point displacements [nd, *control_shape], in voxels
    flips: list[int] = field(default_factory=list)  # patch axes to reverse

    @property
    def is_identity(self) -> bool:
        return not any(self.rotation) and self.scale == 1.0 and self.elastic is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["elastic"] = None if self.elastic is None else float(np.abs(self.elastic).max())
        return d


def _rotation_matrix(angles: Sequence[float], nd: int) -> np.ndarray:
    if nd == 2:
        (a,) = angles or [0.0]
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s], [s, c]])
    ax, ay, az = ([*list(angles), 0.0, 0.0, 0.0])[:3]
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_spatial_params(
    rng: np.random.Generator,
    nd: int,
    patch_size: Sequence[int],
    *,
    rotation_p: float,
    rotation_degrees: float,
    scaling_p: float,
    scaling_range: tuple[float, float],
    elastic_p: float,
    elastic_sigma: float,
    elastic_magnitude: float,
    flip_p: float,
    flip_axes: Sequence[int] | None,
) -> SpatialParams:
    """Draw the parameters of one patch's spatial augmentation."""
    params = SpatialParams()
    if rng.random() < rotation_p and rotation_degrees > 0:
        n_angles = 1 if nd == 2 else 3
        params.rotation = [
            float(a) for a in np.radians(rng.uniform(-rotation_degrees, rotation_degrees, n_angles))
        ]
    if rng.random() < scaling_p:
        params.scale = float(rng.uniform(*scaling_range))
    if rng.random() < elastic_p and elastic_magnitude > 0:
        control = [max(2, int(np.ceil(p / elastic_sigma)) + 1) for p in patch_size]
        params.elastic = rng.uniform(-elastic_magnitude, elastic_magnitude, (nd, *control)).astype(np.float32)
    axes = list(range(nd)) if flip_axes is None else [a for a in flip_axes if a < nd]
    params.flips = [a for a in axes if rng.random() < flip_p]
    return params


def _elastic_field(control: np.ndarray, patch_size: Sequence[int]) -> torch.Tensor:
    """Smooth displacement field [*patch, nd] upsampled from control points (cubic-like)."""
    nd = control.shape[0]
    t = torch.from_numpy(control)[None]  # [1, nd, *control]
    mode = "bilinear" if nd == 2 else "trilinear"
    up = F.interpolate(t, size=tuple(patch_size), mode=mode, align_corners=True)[0]
    return up.permute(*range(1, nd + 1), 0)  # [*patch, nd]


def sample_patch(
    image: torch.Tensor,
    label: torch.Tensor | None,
    center: Sequence[float],
    patch_size: Sequence[int],
    params: SpatialParams,
    spacing: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Extract a transformed patch centred on ``center`` (voxel coordinates of the case).

    Args:
        image: ``[C, *spatial]`` float tensor of the whole case.
        label: ``[*spatial]`` integer tensor, or None.
        center: Patch centre in case voxel coordinates.
        patch_size: Output size per axis.
        params: What to apply (see :class:`SpatialParams`).
        spacing: Voxel size per axis, so rotations are rigid in millimetres.

    Returns:
        ``[C, *patch]`` image and ``[*patch]`` label (outside the case: 0).
    """
    nd = image.ndim - 1
    size = image.shape[1:]
    patch_size = [int(p) for p in patch_size]
    if params.is_identity:
        img, lab = _crop(image, label, center, patch_size)
    else:
        grid = torch.stack(
            torch.meshgrid(
                *[torch.arange(p, dtype=torch.float32) - (p // 2) for p in patch_size], indexing="ij"
            ),
            dim=-1,
        )  # [*patch, nd] integer offsets in voxels (patch voxel p // 2 sits on the centre)
        sp = np.ones(nd) if spacing is None else np.asarray(spacing, dtype=np.float64)
        rot = _rotation_matrix(params.rotation, nd) if params.rotation else np.eye(nd)
        m = np.diag(1.0 / sp) @ rot @ np.diag(sp) * params.scale
        coords = grid @ torch.from_numpy(m.T.astype(np.float32))
        if params.elastic is not None:
            coords = coords + _elastic_field(params.elastic, patch_size)
        coords = coords + torch.tensor(np.asarray(center, dtype=np.float32))
        # grid_sample wants (x, y[, z]) = reversed axes, normalised to [-1, 1] (align_corners=True)
        norm = torch.stack(
            [2.0 * coords[..., a] / max(size[a] - 1, 1) - 1.0 for a in reversed(range(nd))], dim=-1
        )[None]
        img = F.grid_sample(
            image[None].float(), norm, mode="bilinear", padding_mode="zeros", align_corners=True
        )[0]
        lab = None
        if label is not None:
            lab = F.grid_sample(
                label[None, None].float(), norm, mode="nearest", padding_mode="zeros", align_corners=True
            )[0, 0].to(label.dtype)
    if params.flips:
        img = torch.flip(img, dims=[a + 1 for a in params.flips])
        if lab is not None:
            lab = torch.flip(lab, dims=list(params.flips))
    return img, lab


def _crop(
    image: torch.Tensor, label: torch.Tensor | None, center: Sequence[float], patch_size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain crop with zero padding (the identity transform, without interpolation)."""
    nd = image.ndim - 1
    size = image.shape[1:]
    starts = [int(np.floor(c + 0.5)) - p // 2 for c, p in zip(center, patch_size)]
    img = image.new_zeros((image.shape[0], *patch_size))
    lab = label.new_zeros(tuple(patch_size)) if label is not None else None
    src, dst = [], []
    for a in range(nd):
        s0, s1 = max(starts[a], 0), min(starts[a] + patch_size[a], size[a])
        if s1 <= s0:
            return img, lab
        src.append(slice(s0, s1))
        dst.append(slice(s0 - starts[a], s1 - starts[a]))
    img[(slice(None), *dst)] = image[(slice(None), *src)]
    if lab is not None:
        lab[tuple(dst)] = label[tuple(src)]
    return img, lab
