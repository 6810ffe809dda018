"""NIfTI-1/2 reading and writing with nibabel, keeping the affine exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medseg.errors import CorruptFileError
from medseg.io.atomic import atomic_output
from medseg.volume import Volume, VolumeMeta, volume_to_nifti

log = logging.getLogger(__name__)

#: qform and sform further apart than this (mm at the grid corners) are reported.
QFORM_SFORM_TOL_MM = 1e-2


def read_nifti(path: str | Path) -> Volume:
    """Read a ``.nii``/``.nii.gz`` file.

    The affine is the sform when its code is set, else the qform (nibabel's
    rule, which is also what ITK-SNAP and 3D Slicer show for scanner data).
    When both are set and disagree, a warning is recorded in ``meta.warnings``.
    Scaling (``scl_slope``/``scl_inter``) is applied; integer data without
    scaling keep their integer type.
    """
    import nibabel as nib

    from medseg import geometry
    from medseg.io.headers import check_header

    path = Path(path)
    check_header(path)  # dims, datatype, vox_offset vs file size before nibabel allocates
    try:
        img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for broken files
        raise CorruptFileError(
            f"cannot read NIfTI file {path}: {exc}",
            hint="check that the file is complete and really NIfTI",
        ) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise CorruptFileError(f"{path} is not a NIfTI image")
    header = img.header
    warnings: list[str] = []
    sform, s_code = img.get_sform(coded=True)
    qform, q_code = img.get_qform(coded=True)
    if sform is not None and qform is not None and int(s_code) > 0 and int(q_code) > 0:
        d = geometry.grid_distance(sform, array.shape, qform, array.shape)
        if d > QFORM_SFORM_TOL_MM:
            warnings.append(f"qform and sform disagree by up to {d:.3g} mm; the sform is used")
    if sform is None and qform is None:
        warnings.append("no qform or sform set: the affine only holds the voxel sizes")
    affine = img.affine
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        if qform is not None and abs(np.linalg.det(qform[:3, :3])) > 1e-12:
            warnings.append("the sform is singular (zero spacing): the qform is used")
            affine = qform
        else:
            raise CorruptFileError(
                f"{path} has a singular affine (a zero voxel size)",
                hint="fix the header's pixdim/sform, e.g. re-export the image",
            )
    if array.ndim == 5 and array.shape[3] == 1:  # NIfTI vector data: components in dim 5
        array = array[:, :, :, 0, :]
    if array.ndim > 4:
        raise CorruptFileError(f"{path} has {array.ndim} dimensions; medseg reads 2D, 3D and 4D images")
    time_spacing = None
    if array.ndim == 4:
        zooms = header.get_zooms()
        if len(zooms) > 3 and zooms[3] > 0:
            unit = header.get_xyzt_units()[1]
            factor = {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
            time_spacing = float(zooms[3]) * factor
    meta = VolumeMeta(
        source=str(path),
        source_format="nifti",
        warnings=warnings,
        time_spacing=time_spacing,
        series_description=_descrip(header),
    )
    return Volume(array, affine, meta)


def spacing_declared(path: str | Path) -> bool:
    """Whether a NIfTI header declares its voxel size.

    False when the spatial unit is "unknown" (``xyzt_units`` 0) *and* every voxel size is exactly 1:
    the signature of an exporter that recorded no spacing at all (e.g. slices restacked from TIFF
    or PNG), so "1 x 1 x 1" is a placeholder, not millimetres. Any other header counts as declared
    (a unit-less header with real voxel sizes is read as mm, as nibabel and ITK do), and so does
    a file nibabel cannot read as NIfTI (the reader reports it).
    """
    import nibabel as nib

    try:
        header = nib.load(str(path)).header
        unit = header.get_xyzt_units()[0]
        zooms = [float(z) for z in header.get_zooms()[:3]]
    except Exception:  # the reader reports broken files; this is only a hint
        return True
    return not (unit == "unknown" and all(z == 1.0 for z in zooms))


def _descrip(header) -> str | None:
    try:
        text = bytes(header["descrip"]).split(b"\0")[0].decode("ascii", "ignore").strip()
    except Exception:
        return None
    return text or None


def write_nifti(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` to a ``.nii`` or ``.nii.gz`` file atomically."""
    import nibabel as nib

    path = Path(path)
    img = volume_to_nifti(volume)
    with atomic_output(path) as tmp:
        nib.save(img, str(tmp))
    return path
