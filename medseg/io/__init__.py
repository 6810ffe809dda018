"""Reading and writing scans: NIfTI, NRRD, MetaImage and DICOM series.

This package never imports torch. The format is chosen from the file
extension; a folder, or a file carrying the DICOM magic, is read as DICOM.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from medseg.errors import InputNotFoundError, UnsupportedFormatError
from medseg.volume import Volume

__all__ = ["ImageFormat", "detect_format", "list_series", "read_volume", "write_volume"]


class ImageFormat(str, Enum):
    """Image formats medseg reads (all) and writes (all but DICOM)."""

    NIFTI = "nifti"
    NRRD = "nrrd"
    MHA = "mha"
    DICOM = "dicom"


_SUFFIXES: dict[str, ImageFormat] = {
    ".nii": ImageFormat.NIFTI,
    ".nii.gz": ImageFormat.NIFTI,
    ".nrrd": ImageFormat.NRRD,
    ".nhdr": ImageFormat.NRRD,
    ".mha": ImageFormat.MHA,
    ".mhd": ImageFormat.MHA,
    ".dcm": ImageFormat.DICOM,
}
WRITABLE = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def detect_format(path: str | Path) -> ImageFormat:
    """The format of an existing path (folder = DICOM).

    Raises:
        InputNotFoundError: the path does not exist.
        UnsupportedFormatError: a file medseg cannot read.
    """
    from medseg.io.dicom.scan import looks_like_dicom

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(
            f"no such file or folder: {p}", hint="check the path (and quote it if it has spaces)"
        )
    if p.is_dir():
        return ImageFormat.DICOM
    fmt = _SUFFIXES.get(_suffix(p))
    if fmt is not None:
        return fmt
    if looks_like_dicom(p):
        return ImageFormat.DICOM
    raise UnsupportedFormatError(
        f"{p} is not a supported image: medseg reads NIfTI (.nii, .nii.gz), NRRD (.nrrd, "
        ".nhdr), MetaImage (.mha, .mhd) and DICOM (a file or a folder of files)",
        hint="convert the file to one of those formats",
    )


def read_volume(
    path: str | Path,
    series: str | None = None,
    resample_uneven: bool = False,
    slice_spacing: float | None = None,
) -> Volume:
    """Read a scan with its exact geometry.

    Args:
        path: A NIfTI/NRRD/MHA/MHD file, a DICOM file, or a folder holding a DICOM series.
        series: For DICOM folders with several series, which one (see :func:`list_series`).
        resample_uneven: For DICOM series with uneven spacing, missing slices or gantry
            tilt: resample onto a regular grid instead of refusing.
        slice_spacing: Slice spacing (mm) of that regular grid (default: median step).

    Returns:
        The :class:`~medseg.volume.Volume`, world coordinates in RAS+.

    Raises:
        MedsegError: subclasses naming the problem (missing path, unsupported or corrupt
            file, ambiguous or irregular DICOM series).
    """
    fmt = detect_format(path)
    if fmt is ImageFormat.NIFTI:
        from medseg.io.nifti import read_nifti

        return read_nifti(path)
    if fmt in (ImageFormat.NRRD, ImageFormat.MHA):
        from medseg.io.itk import read_itk

        return read_itk(path)
    from medseg.io.dicom import read_dicom_series, scan_dicom, select_series

    chosen = select_series(scan_dicom(path), series)
    return read_dicom_series(chosen, resample_uneven=resample_uneven, slice_spacing=slice_spacing)


def list_series(path: str | Path) -> list[dict[str, Any]]:
    """Summaries of the DICOM image series under ``path`` (id, modality, description...)."""
    from medseg.io.dicom import scan_dicom

    return [s.summary() for s in scan_dicom(path).series]


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume atomically; the format follows the extension.

    Raises:
        UnsupportedFormatError: an extension medseg cannot write (DICOM images included:
            masks go to DICOM through SEG/RTSTRUCT export).
    """
    p = Path(path)
    suffix = _suffix(p)
    if suffix in (".nii", ".nii.gz"):
        from medseg.io.nifti import write_nifti

        return write_nifti(volume, p)
    if suffix in (".nrrd", ".nhdr", ".mha", ".mhd"):
        from medseg.io.itk import write_itk

        return write_itk(volume, p)
    raise UnsupportedFormatError(
        f"cannot write {p.name}: medseg writes {', '.join(WRITABLE)}",
        hint="give the output a .nii.gz, .nrrd or .mha name",
    )
