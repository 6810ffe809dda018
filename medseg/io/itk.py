"""NRRD (.nrrd/.nhdr) and MetaImage (.mha/.mhd) through SimpleITK.

ITK stores geometry in LPS+ as origin, spacing and a direction matrix; it is
converted to and from medseg's RAS+ affine here, exactly (float64 throughout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg import geometry
from medseg.errors import CorruptFileError, UnsupportedFormatError
from medseg.io.atomic import atomic_output
from medseg.volume import Volume, VolumeMeta


def read_itk(path: str | Path, source_format: str = "itk") -> Volume:
    """Read a NRRD or MetaImage file. A 4th image dimension becomes the volume axis;
    multi-component (vector) pixels become a 4th axis too. ``source_format`` is recorded in
    the metadata (the format table passes ``nrrd`` or ``mha``)."""
    import SimpleITK as sitk

    from medseg.io.headers import check_header

    path = Path(path)
    check_header(path)  # before SimpleITK: it trusts NDims/DimSize and can crash (issue #14)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        reason = next(
            (line for line in first if "Error" in line or "error" in line), first[-1] if first else ""
        )
        raise CorruptFileError(
            f"cannot read {path.name}: {reason.strip()[:200]}",
            hint="check that the file is complete and its header names an existing data file",
        ) from exc
    dim = image.GetDimension()
    if dim not in (2, 3, 4):
        raise UnsupportedFormatError(f"{path} has {dim} dimensions; medseg reads 2D, 3D and 4D")
    array = sitk.GetArrayFromImage(image)  # (t, z, y, x) or (z, y, x) [+ components]
    n_comp = image.GetNumberOfComponentsPerPixel()
    spacing = np.array(image.GetSpacing(), dtype=np.float64)
    origin = np.array(image.GetOrigin(), dtype=np.float64)
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    if dim == 2:
        spacing = np.append(spacing, 1.0)
        origin = np.append(origin, 0.0)
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction = d3
        array = array[np.newaxis]
    spatial_dir = direction[:3, :3]
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = spatial_dir * spacing[:3]
    affine_lps[:3, 3] = origin[:3]
    # numpy array axes are reversed relative to ITK's index order
    if n_comp > 1:
        array = np.moveaxis(array, -1, 0)  # components first, then (z, y, x)
        array = array.transpose((*range(array.ndim - 1, 0, -1), 0))
    else:
        array = array.transpose(tuple(range(array.ndim - 1, -1, -1)))
    time_spacing = float(spacing[3]) if dim == 4 else None
    meta = VolumeMeta(
        source=str(path),
        source_format=source_format,
        time_spacing=time_spacing,
    )
    return Volume(np.ascontiguousarray(array), geometry.LPS_TO_RAS @ affine_lps, meta)


def volume_to_itk(volume: Volume):  # -> SimpleITK.Image
    """Convert a volume to a ``SimpleITK.Image`` (LPS geometry, 4D as a 4D image)."""
    import SimpleITK as sitk

    if geometry.is_sheared(volume.affine):
        raise UnsupportedFormatError(
            "this volume's voxel axes are not orthogonal (a sheared grid), which NRRD/MetaImage cannot store",
            hint="write NIfTI (.nii.gz) instead, or resample the volume first",
        )
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    affine_lps = geometry.LPS_TO_RAS @ volume.affine
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    direction = affine_lps[:3, :3] / spacing
    origin = affine_lps[:3, 3]
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T), isVector=False)
    if array.ndim == 4:
        d4 = np.eye(4)
        d4[:3, :3] = direction
        image.SetDirection(d4.ravel().tolist())
        image.SetSpacing([*spacing.tolist(), float(volume.meta.time_spacing or 1.0)])
        image.SetOrigin([*origin.tolist(), 0.0])
    else:
        image.SetDirection(direction.ravel().tolist())
        image.SetSpacing(spacing.tolist())
        image.SetOrigin(origin.tolist())
    return image


def write_itk(volume: Volume, path: str | Path, compress: bool = True) -> Path:
    """Write a volume to NRRD or MetaImage atomically (format from the extension)."""
    import SimpleITK as sitk

    path = Path(path)
    image = volume_to_itk(volume)
    with atomic_output(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path
