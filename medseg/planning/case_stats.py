"""One case of the dataset fingerprint: geometry, intensities and label statistics.

Every case is measured after reorientation to RAS (:func:`medseg.geometry.reorient_array`, the
exact permutation/flip the preprocessing :class:`~medseg.transforms.preprocess.plan.Plan` applies),
so axis 0 runs left -> right, 1 posterior -> anterior, 2 inferior -> superior in every case.
Intensity statistics follow nnU-Net's fingerprint (Isensee et al., Nature Methods 2021): they are
taken over the foreground (label > 0) voxels, and a bounded, seeded random sample of those voxels
is kept for the dataset-wide pooled statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg import geometry
from medseg.data.cases import GRID_TOL_MM, load_case, read_label
from medseg.data.manifest import CaseEntry, Manifest
from medseg.errors import GeometryMismatchError, MedsegError
from medseg.io import read_volume
from medseg.io.formats import format_for, is_2d_source
from medseg.io.nifti import spacing_declared

#: Canonical orientation every case is measured in (the default ``preprocessing.orientation``).
ORIENTATION = "RAS"
#: Foreground voxels kept per case for the pooled intensity statistics.
SAMPLE_PER_CASE = 10_000
#: Seed of the per-case sample (the same for every case, as nnU-Net's 1234).
SAMPLE_SEED = 1234

Grid = tuple[np.ndarray, np.ndarray]  # (array [i, j, k], affine 4x4)


def _channels(case: CaseEntry, manifest: Manifest) -> tuple[list[Grid], bool, bool]:
    """The channels of a case as (array [i, j, k], affine), whether their grids agree and
    whether the case was read from a 2D picture. Channels on different grids are read one by one
    (the medseg loader refuses them) so the fingerprint can report them instead."""
    try:
        image = load_case(case, manifest, with_label=False).image
        arr = image.array if image.array.ndim == 4 else image.array[..., np.newaxis]
        return [(arr[..., c], image.affine) for c in range(arr.shape[3])], True, is_2d_source(image)
    except GeometryMismatchError:
        vols = [read_volume(p) for p in case.images]
        for path, v in zip(case.images, vols):
            if v.array.ndim != 3:
                raise MedsegError(
                    f"case {case.id}: {path} is 4D ({v.shape}); give one 3D file per channel "
                    "or set channels_in_one_file"
                ) from None
        return [(v.array, v.affine) for v in vols], False, is_2d_source(vols[0])


def _is_nifti(path: str) -> bool:
    fmt = format_for(path)
    return fmt is not None and fmt.name == "nifti"


def _same_grid(a: Grid, b: Grid) -> bool:
    return geometry.same_grid(a[1], a[0].shape[:3], b[1], b[0].shape[:3], GRID_TOL_MM)


def _is_integer_valued(arr: np.ndarray) -> bool:
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return True
    few = arr.ravel()[:: max(1, arr.size // 4096)]  # most float images fail on a few voxels
    few = few[np.isfinite(few)]
    if not np.array_equal(few, np.rint(few)):
        return False
    finite = arr[np.isfinite(arr)]
    return bool(np.array_equal(finite, np.rint(finite)))


def channel_stats(
    arr: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> tuple[dict, np.ndarray]:
    """Intensity statistics of one channel and its sample for the pooled statistics.

    Args:
        arr: The channel, any shape.
        mask: Foreground mask of the same shape, or None. With no mask, or an empty one, the
            statistics cover the whole image (``foreground: false``).
        rng: Source of the random sample (seeded per case).

    Returns:
        ``{p00_5, p99_5, mean, std, min, max, integer_valued, foreground, image_min, image_max,
        dtype, non_finite}`` (statistics over the finite values, ``non_finite`` the NaN/inf voxels;
        percentiles as numpy's linear ``np.percentile``) and up to
        :data:`SAMPLE_PER_CASE` of the voxels those statistics cover (drawn without replacement).
    """
    foreground = mask is not None and bool(mask.any())
    values = arr[mask] if foreground else arr.ravel()
    non_finite = 0 if np.issubdtype(arr.dtype, np.integer) else int(arr.size - np.isfinite(arr).sum())
    if not np.issubdtype(values.dtype, np.integer):
        values = values[np.isfinite(values)]
    if values.size == 0:
        values = np.zeros(1, dtype=np.float32)
    v = values.astype(np.float64)
    lo, hi = np.percentile(v, [0.5, 99.5])
    take = rng.choice(v.size, SAMPLE_PER_CASE, replace=False) if v.size > SAMPLE_PER_CASE else None
    sample = values if take is None else values[np.sort(take)]
    stats = {
        "p00_5": float(lo),
        "p99_5": float(hi),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "integer_valued": _is_integer_valued(arr),
        "foreground": foreground,
        "image_min": float(np.nanmin(arr)) if arr.size else 0.0,
        "image_max": float(np.nanmax(arr)) if arr.size else 0.0,
        "dtype": str(arr.dtype),
        "non_finite": non_finite,
    }
    return stats, sample


def class_stats(label: np.ndarray, spacing: tuple[float, float, float]) -> tuple[dict, list | None]:
    """Per label value present (> 0): voxels, volume (mm^3), connected components (full
    neighbourhood, :func:`medseg.transforms.components.connected_components`), centroid as a
    fraction of the image extent (``(index + 0.5) / size`` per axis) and bounding-box size (mm).

    Args:
        label: Integer label map [i, j, k] in the canonical orientation.
        spacing: Voxel size (mm) along i, j, k.

    Returns:
        The classes (keys: the values as strings) and the foreground bounding box as half-open
        voxel ranges ``[[lo, hi), ...]`` (None when the label is empty).
    """
    from scipy import ndimage

    from medseg.transforms.components import connected_components

    counts = np.bincount(label.ravel().astype(np.int64))
    boxes = ndimage.find_objects(label.astype(np.int32, copy=False))
    shape = np.array(label.shape[:3], dtype=np.float64)
    classes: dict[str, dict[str, Any]] = {}
    union: list[list[int]] | None = None
    voxel_mm3 = float(np.prod(spacing))
    for value in np.flatnonzero(counts):
        if value == 0 or boxes[value - 1] is None:
            continue
        box = boxes[value - 1]
        sub = label[box] == value
        idx = np.nonzero(sub)
        offset = np.array([s.start for s in box], dtype=np.float64)
        centroid = np.array([i.mean() for i in idx]) + offset
        lo = [s.start for s in box]
        hi = [s.stop for s in box]
        classes[str(int(value))] = {
            "voxels": int(counts[value]),
            "volume_mm3": int(counts[value]) * voxel_mm3,
            "components": connected_components(sub)[1],
            "centroid_rel": [float(x) for x in (centroid + 0.5) / shape],
            "extent_mm": [float((h - low) * s) for low, h, s in zip(lo, hi, spacing)],
        }
        if union is None:
            union = [[low, h] for low, h in zip(lo, hi)]
        else:
            union = [[min(u[0], low), max(u[1], h)] for u, low, h in zip(union, lo, hi)]
    return classes, union


def channel_copies(channels: list[Grid]) -> list[list[int]]:
    """Groups of channels that are exact copies of each other (same grid, same voxels), e.g.
    ``[[0, 1, 2]]`` when a missing sequence was filled with another one (TCGA LGG copies FLAIR
    into absent pre- and post-contrast channels). Channels are compared voxel for voxel; constant
    channels (a sequence filled with zeros) are not copies of anything."""
    groups: list[list[int]] = []
    for i, ch in enumerate(channels):
        if ch[0].size == 0 or np.all(ch[0] == ch[0].flat[0]):
            continue
        for group in groups:
            first = channels[group[0]]
            if _same_grid(first, ch) and np.array_equal(first[0], ch[0]):
                group.append(i)
                break
        else:
            groups.append([i])
    return [g for g in groups if len(g) > 1]


def _channel_entries(
    channels: list[Grid], label: Grid | None, foreground: np.ndarray | None
) -> tuple[list[dict], list[np.ndarray]]:
    """Statistics and samples of every channel: over ``foreground`` (the RAS label > 0) for the
    channels on the label's grid, over the whole image for the others."""
    rng = np.random.default_rng(SAMPLE_SEED)
    stats, samples = [], []
    for ch in channels:
        if label is not None and foreground is not None and _same_grid(ch, label):
            s, sample = channel_stats(geometry.reorient_array(ch[0], ch[1], ORIENTATION)[0], foreground, rng)
        else:
            s, sample = channel_stats(ch[0], None, rng)
        stats.append(s)
        samples.append(sample)
    return stats, samples


def fingerprint_case(case: CaseEntry, manifest: Manifest) -> dict[str, Any]:
    """Measure one case (see the module docstring and ``fingerprint.json``'s contract).

    Args:
        case: The case (absolute paths, as :func:`medseg.data.manifest.load_manifest` gives).
        manifest: Its manifest (channels, ``channels_in_one_file``, ``label_map``).

    Returns:
        ``{"record": <the case's fingerprint entry>, "sample": [array per channel]}``: the
        sample holds up to :data:`SAMPLE_PER_CASE` voxel values per channel (foreground when
        the record's channel says ``foreground``, else the whole image).

    Raises:
        MedsegError: a file is missing or unreadable (one line naming it).
    """
    channels, channels_agree, from_picture = _channels(case, manifest)
    first = channels[0]
    label = None
    if case.label:
        reference = case.images[0] if Path(case.images[0]).is_dir() else None
        vol = read_label(case.label, reference, manifest.label_map)
        label = (vol.array, vol.affine)
    label_agrees = label is None or _same_grid(first, label)
    arr_r, aff_r = geometry.reorient_array(first[0], first[1], ORIENTATION)
    spacing = geometry.spacing(aff_r)
    classes, bbox = {}, None
    lab_r = None
    if label is not None:
        lab_r, lab_aff = geometry.reorient_array(label[0], label[1], ORIENTATION)
        classes, bbox = class_stats(lab_r, spacing if label_agrees else geometry.spacing(lab_aff))
        if not label_agrees:
            bbox = None
    stats, samples = _channel_entries(channels, label, None if lab_r is None else lab_r > 0)
    shape = [int(n) for n in arr_r.shape[:3]]
    record = {
        "id": case.id,
        "shape": shape,
        "spacing": [float(s) for s in spacing],
        # a header with unit "unknown" and 1 x 1 x 1 records no voxel size (the affine may scale it)
        "spacing_declared": not _is_nifti(case.images[0])
        or spacing_declared(case.images[0])
        or any(abs(s - 1.0) > 1e-6 for s in spacing),
        "orientation": geometry.orientation_code(first[1]),
        "label_grid_agrees": bool(label_agrees),
        "channel_grids_agree": bool(channels_agree),
        "is_2d": bool(from_picture or 1 in shape),
        "has_label": label is not None,
        "channels": stats,
        "channel_copies": channel_copies(channels) if channels_agree else [],
        "classes": classes,
        "foreground_bbox_vox": bbox,
    }
    return {"record": record, "sample": samples}
