"""Load a manifest case: its channels as one array on one grid, and its label map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg import geometry
from medseg.data.manifest import CaseEntry, Manifest
from medseg.errors import GeometryMismatchError, MedsegError
from medseg.io import is_image, read_volume
from medseg.io.formats import gray_labels, is_2d_source
from medseg.volume import Volume

#: Image and label grids further apart than this (mm) do not agree.
GRID_TOL_MM = 1e-3


@dataclass
class LoadedCase:
    """A case read from disk: ``image`` holds channels on axis 3 ([i, j, k, c])."""

    id: str
    image: Volume
    label: Volume | None


def _is_label_object(path: Path) -> bool:
    """True for DICOM SEG / RTSTRUCT files (with or without the DICOM preamble)."""
    if path.is_dir() or is_image(path):
        return False
    from medseg.io.dicom.label_objects import label_object_kind

    return label_object_kind(path) is not None


def read_label(path: str | Path, reference: str | Path | None, label_map: dict[int, int] | None) -> Volume:
    """Read a label map (any format of the format table, 2D pictures included, or DICOM
    SEG/RTSTRUCT on ``reference``), apply ``label_map`` (raw value -> class) and return
    integer labels. A label picture saved in colour must hold equal channels."""
    p = Path(path)
    if _is_label_object(p):
        from medseg.io.dicom.label_objects import read_label_object

        vol = read_label_object(p, reference)
    else:
        vol = gray_labels(read_volume(p), p)
    arr = vol.array
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if np.issubdtype(arr.dtype, np.floating):
        rounded = np.rint(arr)
        if not np.allclose(arr, rounded, atol=1e-3):
            raise MedsegError(
                f"label {p} holds non-integer values (e.g. {float(arr[arr != rounded].flat[0]):g})",
                hint="labels must be integer class indices",
            )
        arr = rounded
    arr = arr.astype(np.int64)
    if label_map:
        mapped = np.full(arr.shape, -1, dtype=np.int64)
        for raw, cls in label_map.items():
            mapped[arr == raw] = cls
        unmapped = np.unique(arr[mapped < 0])
        if unmapped.size:
            raise MedsegError(
                f"label {p} holds values {unmapped[:10].tolist()} that label_map does not list",
                hint="add them to the manifest's label_map",
            )
        arr = mapped
    dtype = np.uint8 if arr.size == 0 or arr.max() < 256 else np.uint16
    return Volume(arr.astype(dtype), vol.affine, vol.meta)


def load_case(case: CaseEntry, manifest: Manifest, with_label: bool = True) -> LoadedCase:
    """Read the channels and label of one case and check that their grids agree.

    Raises:
        MedsegError: a file is missing or unreadable, or grids disagree.
    """
    vols = [read_volume(p) for p in case.images]
    if manifest.channels_in_one_file:
        img = vols[0]
        arr = img.array if img.array.ndim == 4 else img.array[..., np.newaxis]
        if arr.shape[3] != len(manifest.channels):
            raise MedsegError(
                f"case {case.id}: {case.images[0]} has {arr.shape[3]} channel(s), the manifest "
                f"declares {len(manifest.channels)}"
            )
        image = Volume(arr, img.affine, img.meta)
    else:
        first = vols[0]
        for path, v in zip(case.images[1:], vols[1:]):
            if not geometry.same_grid(first.affine, first.shape, v.affine, v.shape, GRID_TOL_MM):
                raise GeometryMismatchError(
                    f"case {case.id}: channel {path} is not on the grid of {case.images[0]}",
                    hint="resample all channels of a case onto one grid first",
                )
        arrays = []
        for path, v in zip(case.images, vols):
            if v.array.ndim == 4:
                if is_2d_source(v):
                    raise MedsegError(
                        f"case {case.id}: {path} is a colour picture with {v.array.shape[3]} channels",
                        hint="declare them (e.g. channels: [red, green, blue]) and set "
                        "channels_in_one_file: true, or save the picture in greyscale",
                    )
                raise MedsegError(
                    f"case {case.id}: {path} is 4D ({v.shape}); give one 3D file per channel "
                    "or set channels_in_one_file"
                )
            arrays.append(v.array)
        image = Volume(np.stack(arrays, axis=-1), first.affine, first.meta)
    label = None
    if with_label and case.label:
        reference = case.images[0] if Path(case.images[0]).is_dir() else None
        label = read_label(case.label, reference, manifest.label_map)
        if not geometry.same_grid(image.affine, image.spatial_shape, label.affine, label.shape, GRID_TOL_MM):
            d = geometry.grid_distance(image.affine, image.spatial_shape, label.affine, label.shape)
            what = (
                f"shape {label.spatial_shape} vs {image.spatial_shape}"
                if label.spatial_shape != image.spatial_shape
                else f"voxels up to {d:.3g} mm apart"
            )
            raise GeometryMismatchError(
                f"case {case.id}: label {Path(case.label).name} is not on the image grid ({what})",
                hint="resample the label onto its image, or fix the pairing in the manifest",
            )
    return LoadedCase(case.id, image, label)
