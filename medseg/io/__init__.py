"""Reading and writing scans: NIfTI, NRRD, MetaImage, 2D pictures and DICOM series.

This package never imports torch. The format of a file comes from its suffix through the
format table (:mod:`medseg.io.formats`: one row per format with its suffixes, reader and
writer); a folder, or a file carrying the DICOM magic, is read as DICOM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.errors import InputNotFoundError, UnsupportedFormatError
from medseg.io.formats import (
    DICOM,
    FORMATS,
    ImageFormat,
    case_id,
    describe_formats,
    format_for,
    image_suffix,
    is_image,
    writable_suffixes,
    writer_for,
)
from medseg.io.guard import reading
from medseg.volume import Volume

__all__ = [
    "DICOM",
    "FORMATS",
    "WRITABLE",
    "ImageFormat",
    "case_id",
    "detect_format",
    "format_for",
    "image_suffix",
    "is_image",
    "list_series",
    "read_volume",
    "write_volume",
]

#: Every suffix :func:`write_volume` accepts (from the format table).
WRITABLE = writable_suffixes()


def detect_format(path: str | Path) -> ImageFormat:
    """The format of an existing path: its table row, or :data:`DICOM` (a folder, a ``.dcm``
    file or a file carrying the DICOM magic).

    Raises:
        InputNotFoundError: the path does not exist.
        UnsupportedFormatError: a file medseg cannot read (the message lists what it reads).
    """
    from medseg.io.dicom.scan import looks_like_dicom

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(
            f"no such file or folder: {p}", hint="check the path (and quote it if it has spaces)"
        )
    if p.is_dir():
        return DICOM
    fmt = format_for(p)
    if fmt is not None:
        return fmt
    if looks_like_dicom(p):
        return DICOM
    raise UnsupportedFormatError(
        f"{p} is not a supported image: medseg reads {describe_formats()} and DICOM (a file or a "
        "folder of files)",
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
        path: A file of the format table (NIfTI, NRRD, MetaImage, PNG/TIFF/JPEG/BMP...),
            a DICOM file, or a folder holding a DICOM series.
        series: For DICOM folders with several series, which one (see :func:`list_series`).
        resample_uneven: For DICOM series with uneven spacing, missing slices or gantry
            tilt: resample onto a regular grid instead of refusing.
        slice_spacing: Slice spacing (mm) of that regular grid (default: median step).

    Returns:
        The :class:`~medseg.volume.Volume`, world coordinates in RAS+. A 2D picture is a
        ``[rows, columns, 1]`` volume (channels on axis 3 for colour) with an identity affine.

    Raises:
        MedsegError: subclasses naming the problem (missing path, unsupported or corrupt
            file, ambiguous or irregular DICOM series).
    """
    fmt = detect_format(path)
    with reading(path, fmt.name):
        if fmt is not DICOM and fmt.reader is not None:
            return fmt.reader(Path(path))
        from medseg.io.dicom import read_dicom_series, scan_dicom, select_series

        chosen = select_series(scan_dicom(path), series)
        return read_dicom_series(chosen, resample_uneven=resample_uneven, slice_spacing=slice_spacing)


def list_series(path: str | Path) -> list[dict[str, Any]]:
    """Summaries of the DICOM image series under ``path`` (id, modality, description...)."""
    from medseg.io.dicom import scan_dicom

    return [s.summary() for s in scan_dicom(path).series]


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write a volume atomically; the format follows the extension (see the format table).

    Raises:
        UnsupportedFormatError: an extension medseg cannot write (DICOM images included:
            masks go to DICOM through SEG/RTSTRUCT export), or values/a shape the format
            cannot hold (a 3D volume as PNG, fractional values as PNG...).
    """
    p = Path(path)
    return writer_for(p)(volume, p)
