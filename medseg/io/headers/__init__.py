"""Header checks that run before any native reader or allocation (issue #14).

SimpleITK and nibabel trust the header: a ``DimSize`` of ``1e30`` or an ``NDims``
of ``1e30`` reaches C++ unchecked and ends in a segfault or a huge allocation.
:func:`check_header` parses NIfTI-1/2, NRRD (NRRD0001-0005) and MetaImage (MetaIO)
headers in pure Python first and refuses, with one
:class:`~medseg.errors.CorruptFileError` line naming the file and the field:

* dimensions outside 1..4 (NRRD: 1..5 counting a component axis; NIfTI: ``dim[0]`` 1..7);
* sizes that are not positive integers, or whose decoded array would exceed
  :func:`max_image_bytes` (4 GiB, ``$MEDSEG_MAX_IMAGE_BYTES``);
* spacings that are not finite and positive, direction/space matrices that are not finite;
* unknown element types and encodings;
* data files that are missing or lie outside the header's folder (absolute paths,
  ``..``), raw data shorter than the header claims, compressed data too small to
  hold it (DEFLATE expands at most 1032:1).
"""

from __future__ import annotations

from pathlib import Path

from medseg.io.headers._common import DEFAULT_MAX_IMAGE_BYTES, MAX_BYTES_ENV, max_image_bytes
from medseg.io.headers.metaimage import check_metaimage_header
from medseg.io.headers.nifti import check_nifti_header
from medseg.io.headers.nrrd import check_nrrd_header

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "MAX_BYTES_ENV",
    "check_header",
    "check_metaimage_header",
    "check_nifti_header",
    "check_nrrd_header",
    "max_image_bytes",
]

_CHECKS = {
    ".nii": check_nifti_header,
    ".nrrd": check_nrrd_header,
    ".nhdr": check_nrrd_header,
    ".mha": check_metaimage_header,
    ".mhd": check_metaimage_header,
}


def check_header(path: str | Path) -> None:
    """Check the header of a NIfTI, NRRD or MetaImage file (chosen by suffix; other
    suffixes pass unchecked).

    Raises:
        CorruptFileError: the header is malformed, out of range or points at missing,
            outside or too short data (the message names the file and the field).
        UnsupportedFormatError: more dimensions than medseg reads.
    """
    path = Path(path)
    name = path.name.lower()
    check = _CHECKS.get(".nii" if name.endswith(".nii.gz") else path.suffix.lower())
    if check is not None:
        check(path)
