"""NIfTI-1/NIfTI-2 header check, in pure Python (numpy views of the raw bytes).

Follows the NIfTI-1 header (nifti1.h, 348 bytes, magic ``n+1``) and NIfTI-2
header (nifti2.h, 540 bytes, magic ``n+2``): ``sizeof_hdr`` gives the version
and byte order, ``dim`` the shape, ``datatype`` the voxel type, ``vox_offset``
where the voxels start. A ``.nii.gz`` is only decompressed as far as its header.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from medseg.errors import CorruptFileError
from medseg.io.headers._common import (
    DEFLATE_MAX_RATIO,
    check_available,
    check_decoded_size,
    corrupt,
)

#: NIfTI ``datatype`` codes medseg reads and their sizes in bytes (nifti1.h, NIFTI_TYPE_*).
DATATYPE_BYTES: dict[int, int] = {
    2: 1,  # uint8
    4: 2,  # int16
    8: 4,  # int32
    16: 4,  # float32
    32: 8,  # complex64
    64: 8,  # float64
    128: 3,  # RGB24
    256: 1,  # int8
    512: 2,  # uint16
    768: 4,  # uint32
    1024: 8,  # int64
    1280: 8,  # uint64
    1792: 16,  # complex128
    2304: 4,  # RGBA32
}
_VERSIONS = {348: ("nifti1", 352, b"n+1"), 540: ("nifti2", 544, b"n+2")}


def check_nifti_header(path: Path) -> None:
    """Check a ``.nii``/``.nii.gz`` header before nibabel maps or allocates its voxels.

    Raises:
        CorruptFileError: a wrong ``sizeof_hdr``/magic, ``dim`` out of range, an
            unknown ``datatype``, non-finite ``pixdim``/``srow``/quaternion fields,
            a ``vox_offset`` inside the header, or fewer voxel bytes than the header claims.
    """
    compressed = path.name.lower().endswith(".gz")
    hdr, offset_min = _header(path, compressed)
    dim = [int(d) for d in hdr["dim"]]
    if not 1 <= dim[0] <= 7:
        raise corrupt(path, "dim", f"dim[0] must be 1 to 7, got {dim[0]}")
    shape = dim[1 : dim[0] + 1]
    if min(shape) < 1:
        raise corrupt(path, "dim", f"sizes must be positive, got {shape}")
    datatype = int(hdr["datatype"])
    if datatype not in DATATYPE_BYTES:
        raise corrupt(path, "datatype", f"is not a NIfTI data type medseg reads: {datatype}")
    _check_transform_fields(path, hdr, dim[0])
    needed = check_decoded_size(path, "dim", shape, DATATYPE_BYTES[datatype])
    vox_offset = float(hdr["vox_offset"])
    if not math.isfinite(vox_offset) or vox_offset != int(vox_offset) or vox_offset < 0:
        raise corrupt(path, "vox_offset", f"must be a whole number of bytes, got {vox_offset}")
    if 0 < vox_offset < offset_min:
        raise corrupt(path, "vox_offset", f"is {vox_offset:.0f}, inside the {offset_min}-byte header")
    start = int(vox_offset) or offset_min
    size = path.stat().st_size
    if start > (DEFLATE_MAX_RATIO * size if compressed else size):
        raise corrupt(path, "vox_offset", f"is {start}, past the end of the data")
    if compressed:
        check_available(path, "dim", size, start + needed, "deflate")
    else:
        check_available(path, "dim", max(size - start, 0), needed)


def _header(path: Path, compressed: bool) -> tuple[np.void, int]:
    """The header record in its own byte order, and the least ``vox_offset`` allowed."""
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            raw = f.read(540)
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, or a broken stream
        raise CorruptFileError(
            f"cannot read NIfTI file {path.name}: {exc}", hint="check that the file is complete"
        ) from None
    if len(raw) < 348:
        raise corrupt(path, "sizeof_hdr", f"the file ends after {len(raw)} bytes, within the header")
    for order in ("<", ">"):
        found = _VERSIONS.get(int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0]))
        if found is not None:
            break
    else:
        raise corrupt(path, "sizeof_hdr", "must be 348 (NIfTI-1) or 540 (NIfTI-2)")
    module, offset_min, expected = found
    import importlib

    dtype = importlib.import_module(f"nibabel.{module}").header_dtype.newbyteorder(order)
    if len(raw) < dtype.itemsize:
        raise corrupt(path, "sizeof_hdr", f"the file ends after {len(raw)} bytes, within the header")
    hdr = np.frombuffer(raw[: dtype.itemsize], dtype=dtype)[0]
    magic = bytes(hdr["magic"])[:3]
    if magic != expected:
        raise corrupt(path, "magic", f"must be {expected.decode()!r} for a single-file NIfTI, got {magic!r}")
    return hdr, offset_min


def _check_transform_fields(path: Path, hdr: np.void, ndim: int) -> None:
    """``pixdim`` finite (spatial ones > 0 unless the sform, which nibabel then uses, is set),
    ``srow_*`` finite when the sform is used, quaternion and offsets finite when the qform is used,
    ``scl_slope``/``scl_inter`` not infinite."""
    sform, qform = int(hdr["sform_code"]), int(hdr["qform_code"])
    pixdim = [float(p) for p in hdr["pixdim"][1 : ndim + 1]]
    for axis, value in enumerate(pixdim, start=1):
        if not math.isfinite(value):
            raise corrupt(path, "pixdim", f"pixdim[{axis}] must be finite, got {value}")
        if axis <= 3 and value <= 0 and sform <= 0:  # nibabel takes the sform when it is set
            raise corrupt(path, "pixdim", f"pixdim[{axis}] (a voxel size) must be positive, got {value}")
    if sform > 0:
        for key in ("srow_x", "srow_y", "srow_z"):
            if not np.all(np.isfinite(hdr[key])):
                raise corrupt(path, key, "must be finite")
    if qform > 0:
        for key in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z"):
            if not math.isfinite(float(hdr[key])):
                raise corrupt(path, key, f"must be finite, got {float(hdr[key])}")
    for key in ("scl_slope", "scl_inter"):
        if math.isinf(float(hdr[key])):
            raise corrupt(path, key, "must not be infinite")
