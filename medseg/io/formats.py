"""The input format table: every file format medseg reads, with its suffixes, reader and writer.

This table is the only place that knows file suffixes. Discovery, evaluation matching,
manifests, data loading, export and the CLI ask it (:func:`image_suffix`, :func:`case_id`,
:func:`is_image`, :func:`format_for`) instead of keeping their own lists. Adding a format
is adding a row to :data:`FORMATS`.

DICOM is not a row: a DICOM series spans many files (or a folder), so it is found by
:func:`medseg.io.detect_format` from the folder or the file's magic; :data:`DICOM` only
names it and its file suffixes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from medseg.errors import UnsupportedFormatError
from medseg.io.image2d import read_image2d, write_image2d
from medseg.io.itk import read_itk, write_itk
from medseg.io.nifti import read_nifti, write_nifti
from medseg.volume import Volume

__all__ = [
    "DICOM",
    "FORMATS",
    "ImageFormat",
    "case_id",
    "describe_formats",
    "format_for",
    "format_named",
    "gray_labels",
    "image_suffix",
    "is_2d_name",
    "is_2d_source",
    "is_companion",
    "is_image",
    "luminance",
    "writable_suffixes",
    "writer_for",
]


@dataclass(frozen=True)
class ImageFormat:
    """One row of the format table.

    Attributes:
        name: Short name, also stored as ``VolumeMeta.source_format`` by the reader.
        title: Name shown to users (``"NIfTI"``).
        suffixes: File name suffixes, lower case with the dot; the first is the one
            medseg writes by default.
        reader: ``reader(path) -> Volume``; None for formats medseg cannot read alone.
        writer: ``writer(volume, path) -> Path`` (atomic); None for formats medseg
            does not write (JPEG: lossy, it would change label values).
        two_d: A 2D picture format (no geometry: 1 x 1 mm pixels, identity affine).
        companions: Suffixes of data files that sit beside a header of this format
            (``.raw`` beside ``.mhd``); they are not images of their own.
    """

    name: str
    title: str
    suffixes: tuple[str, ...]
    reader: Callable[[Path], Volume] | None
    writer: Callable[[Volume, Path], Path] | None
    two_d: bool = False
    companions: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"NIfTI (.nii.gz, .nii)"``."""
        return f"{self.title} ({', '.join(self.suffixes)})"


def _itk(name: str, title: str, suffixes: tuple[str, ...], companions: tuple[str, ...]) -> ImageFormat:
    return ImageFormat(
        name, title, suffixes, partial(read_itk, source_format=name), write_itk, companions=companions
    )


def _picture(name: str, title: str, suffixes: tuple[str, ...], writable: bool = True) -> ImageFormat:
    writer = partial(write_image2d, kind=name) if writable else None
    return ImageFormat(name, title, suffixes, partial(read_image2d, kind=name), writer, two_d=True)


#: Every single-file format medseg reads, in the order shown to users.
FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("nifti", "NIfTI", (".nii.gz", ".nii"), read_nifti, write_nifti),
    _itk("nrrd", "NRRD", (".nrrd", ".nhdr"), companions=(".raw", ".raw.gz")),
    _itk("mha", "MetaImage", (".mha", ".mhd"), companions=(".raw", ".zraw")),
    _picture("png", "PNG", (".png",)),
    _picture("tiff", "TIFF", (".tif", ".tiff")),
    _picture("jpeg", "JPEG", (".jpg", ".jpeg"), writable=False),  # lossy: labels would change
    _picture("bmp", "BMP", (".bmp",)),
)

#: DICOM: a folder of files or one file, found by :func:`medseg.io.detect_format` (not a table row).
DICOM = ImageFormat("dicom", "DICOM", (".dcm", ".ima", ".dicom"), None, None)

# (suffix, format) pairs, longest suffix first: ".nii.gz" is tried before ".nii"
_BY_SUFFIX: tuple[tuple[str, ImageFormat], ...] = tuple(
    sorted(((s, f) for f in FORMATS for s in f.suffixes), key=lambda sf: -len(sf[0]))
)


def _match(path: str | Path) -> tuple[str, ImageFormat] | None:
    name = Path(path).name.lower()
    return next(((s, f) for s, f in _BY_SUFFIX if name.endswith(s) and len(name) > len(s)), None)


def image_suffix(path: str | Path) -> str | None:
    """The table suffix ``path``'s name ends with (case-insensitive, longest first), or None.

    ``image_suffix("ct.NII.GZ") == ".nii.gz"``; a name that is only a suffix (``".png"``)
    is not an image.
    """
    found = _match(path)
    return found[0] if found else None


def format_for(path: str | Path) -> ImageFormat | None:
    """The table row of ``path`` (from its suffix), or None."""
    found = _match(path)
    return found[1] if found else None


def is_image(path: str | Path) -> bool:
    """Whether ``path``'s name has a suffix of the table (DICOM files are not included)."""
    return image_suffix(path) is not None


def case_id(path: str | Path) -> str:
    """The file name less its image suffix (``"a/liver_7.nii.gz"`` -> ``"liver_7"``); a name
    without an image suffix is returned whole."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else name


def is_companion(path: str | Path) -> bool:
    """Whether ``path`` is a data file that belongs beside a header (``.raw`` of an ``.mhd``)."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for f in FORMATS for s in f.companions)


def format_named(name: str | None) -> ImageFormat | None:
    """The row whose ``name`` is ``name`` (as stored in ``VolumeMeta.source_format``), or None."""
    return next((f for f in (*FORMATS, DICOM) if f.name == name), None)


def is_2d_name(path: str | Path) -> bool:
    """Whether ``path`` names a 2D picture (PNG, TIFF, JPEG, BMP...)."""
    fmt = format_for(path)
    return fmt is not None and fmt.two_d


def is_2d_source(volume: Volume) -> bool:
    """Whether ``volume`` was read from a 2D picture format (pixels, not millimetres)."""
    fmt = format_named(volume.meta.source_format)
    return bool(fmt and fmt.two_d)


def gray_labels(volume: Volume, path: str | Path) -> Volume:
    """A label picture saved in colour with equal channels (a grey PNG stored as RGB) as one
    channel; other colour pictures are refused (they hold colours, not class ids). Volumes
    that are not colour pictures are returned as they are.

    Raises:
        UnsupportedFormatError: a colour picture whose channels differ.
    """
    a = volume.array
    if a.ndim != 4 or a.shape[3] == 1 or not is_2d_source(volume):
        return volume
    if all(np.array_equal(a[..., 0], a[..., c]) for c in range(1, a.shape[3])):
        return volume.with_array(a[..., 0])
    raise UnsupportedFormatError(
        f"{path} is a colour image, not a label image",
        hint="save labels as a greyscale or palette (indexed) PNG holding class ids",
    )


def luminance(volume: Volume) -> Volume:
    """For display: an RGB picture as one grey channel (ITU-R 601 weights), float32; other
    volumes unchanged."""
    a = volume.array
    if a.ndim != 4 or a.shape[3] != 3 or not is_2d_source(volume):
        return volume
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return volume.with_array((a.astype(np.float32) * weights).sum(axis=-1))


def writable_suffixes() -> tuple[str, ...]:
    """Every suffix :func:`medseg.io.write_volume` accepts, in table order."""
    return tuple(s for f in FORMATS if f.writer is not None for s in f.suffixes)


def describe_formats(writable: bool = False) -> str:
    """``"NIfTI (.nii.gz, .nii), NRRD (.nrrd, .nhdr), ..."`` for messages and help texts."""
    return ", ".join(f.describe() for f in FORMATS if f.writer is not None or not writable)


def writer_for(path: str | Path) -> Callable[[Volume, Path], Path]:
    """The writer of ``path``'s format.

    Raises:
        UnsupportedFormatError: a suffix medseg does not write, naming those it writes.
    """
    p = Path(path)
    fmt = format_for(p)
    if fmt is not None and fmt.writer is not None:
        return fmt.writer
    why = (
        f"medseg reads {fmt.title} but does not write it (lossy compression would change the values)"
        if fmt is not None
        else f"medseg writes {describe_formats(writable=True)}"
    )
    raise UnsupportedFormatError(
        f"cannot write {p.name}: {why}",
        hint="give the output a .nii.gz, .nrrd or .mha name (or .png/.tif for a 2D image)",
    )
