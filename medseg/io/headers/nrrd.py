"""NRRD (``.nrrd``/``.nhdr``) header check, in pure Python.

Follows the NRRD file format, NRRD0001 to NRRD0005
(https://teem.sourceforge.net/nrrd/format.html): a ``NRRD000N`` magic line, then
``field: value`` lines (``key:=value`` pairs and ``#`` comments are skipped) up to
an empty line, after which an attached header's data follow. A detached header
(``.nhdr``) names its data with ``data file`` (one file, ``LIST [subdim]``, or a
printf pattern with ``min max step [subdim]``).
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.io.headers._common import (
    check_available,
    check_decoded_size,
    check_float,
    check_invertible,
    check_ndim,
    corrupt,
    external_data_bytes,
    parse_ints,
    show,
)

#: NRRD type names (spec, "type") by size in bytes.
_TYPE_NAMES = {
    1: "signed char|int8|int8_t|uchar|unsigned char|uint8|uint8_t",
    2: "short|short int|signed short|signed short int|int16|int16_t"
    "|ushort|unsigned short|unsigned short int|uint16|uint16_t",
    4: "int|signed int|int32|int32_t|uint|unsigned int|uint32|uint32_t|float",
    8: "longlong|long long|long long int|signed long long|signed long long int|int64|int64_t"
    "|ulonglong|unsigned long long|unsigned long long int|uint64|uint64_t|double",
}
TYPE_BYTES: dict[str, int] = {name: n for n, names in _TYPE_NAMES.items() for name in names.split("|")}
#: Encodings (spec, "encoding"); ``None``: raw bytes, ``deflate``: gzip, ``other``: unchecked size.
ENCODINGS: dict[str, str | None] = {
    "raw": None,
    "gz": "deflate",
    "gzip": "deflate",
    **dict.fromkeys(("txt", "text", "ascii", "hex", "bz2", "bzip2"), "other"),
}
#: Axis kinds that are not space or time: their spacing may be ``nan``, direction ``none``.
_NON_SPATIAL_KINDS = {"vector", "list", "point", "normal", "stub", "scalar", "complex", "2-vector"}
_NON_SPATIAL_KINDS |= {"3-color", "rgb-color", "hsv-color", "xyz-color", "4-color", "rgba-color"}
_NON_SPATIAL_KINDS |= {"3-vector", "3-gradient", "3-normal", "4-vector", "quaternion"}
_SPACE_DIMS = {"ras": 3, "las": 3, "lps": 3, "scanner-xyz": 3, "3d-right-handed": 3, "3d-left-handed": 3}
_SPACE_DIMS |= {"right-anterior-superior": 3, "left-anterior-superior": 3, "left-posterior-superior": 3}
_SPACE_DIMS |= {"rast": 4, "last": 4, "lpst": 4, "scanner-xyz-time": 4}
_SPACE_DIMS |= {"3d-right-handed-time": 4, "3d-left-handed-time": 4}
_SPACE_DIMS |= {f"{k}-time": 4 for k in ("right-anterior-superior", "left-anterior-superior")}
_SPACE_DIMS |= {"left-posterior-superior-time": 4}
_MAX_HEADER_BYTES = 16 * 1024**2
_VECTOR = re.compile(r"\(([^()]*)\)|(none)", re.I)


def check_nrrd_header(path: Path) -> None:
    """Check a NRRD header before SimpleITK reads it.

    Raises:
        CorruptFileError: a required field missing or malformed, sizes over the limit,
            non-finite or non-positive spacings and directions, an unknown type or
            encoding, a data file missing, outside the header's folder or too short.
        UnsupportedFormatError: more dimensions than medseg reads (4 plus a component axis).
    """
    fields, data_start, tail = _parse(path)
    ndim = check_ndim(path, "dimension", _required(path, fields, "dimension"), maximum=5)
    sizes = parse_ints(path, "sizes", _required(path, fields, "sizes"), count=ndim)
    kind = _required(path, fields, "type").strip().lower()
    if kind not in TYPE_BYTES:
        raise corrupt(path, "type", f"is not a NRRD type medseg reads: {show(kind)}")
    encoding = _required(path, fields, "encoding").strip().lower()
    if encoding not in ENCODINGS:
        raise corrupt(path, "encoding", f"is not a NRRD encoding: {show(encoding)}")
    endian = fields.get("endian", "").strip().lower()
    needs_endian = TYPE_BYTES[kind] > 1 and encoding not in ("txt", "text", "ascii")
    if endian not in ("little", "big") and (endian or needs_endian):
        raise corrupt(path, "endian", f"must be 'little' or 'big', got {show(endian)}")
    non_spatial = _non_spatial_axes(path, fields, ndim)
    _check_geometry(path, fields, ndim, non_spatial)
    needed = check_decoded_size(path, "sizes", sizes, TYPE_BYTES[kind])
    available = _data_bytes(path, fields, data_start, tail)
    if ENCODINGS[encoding] != "other":
        check_available(path, "data file", available, needed, ENCODINGS[encoding])


def _parse(path: Path) -> tuple[dict[str, str], int, list[str]]:
    """Fields (normalised names), the byte offset after the header, and the lines after
    ``data file: LIST``."""
    with path.open("rb") as f:
        head = f.read(_MAX_HEADER_BYTES)
    lines = head.split(b"\n")
    if not re.fullmatch(rb"NRRD000[1-5]\r?", lines[0]):
        raise corrupt(path, "magic", f"must be NRRD0001..NRRD0005, got {show(lines[0].decode('latin-1'))}")
    fields: dict[str, str] = {}
    offset = len(lines[0]) + 1
    for number, raw in enumerate(lines[1:], start=2):
        offset += len(raw) + 1
        line = raw.decode("latin-1").rstrip("\r")
        if not line.strip():
            return fields, min(offset, len(head)), []
        if line.startswith("#") or ":=" in line.split(": ", 1)[0]:
            continue
        if ": " not in line:
            raise corrupt(path, f"line {number}", f"is not 'field: value': {show(line)}")
        name, value = line.split(": ", 1)
        key = name.strip().lower().replace(" ", "").replace("centers", "centerings")
        if key in fields:
            raise corrupt(path, name, "appears twice")
        fields[key] = value
        if key == "datafile" and value.strip().upper().startswith("LIST"):
            tail = [n.decode("latin-1").strip() for n in lines[number:]]
            return fields, len(head), [n for n in tail if n]
    return fields, len(head), []


def _required(path: Path, fields: dict[str, str], key: str) -> str:
    if key not in fields:
        raise corrupt(path, key, "is missing")
    return fields[key]


def _non_spatial_axes(path: Path, fields: dict[str, str], ndim: int) -> set[int]:
    """Axes whose ``kinds`` entry says they hold components rather than space or time."""
    if "kinds" not in fields:
        return set()
    kinds = fields["kinds"].lower().split()
    if len(kinds) != ndim:
        raise corrupt(path, "kinds", f"needs {ndim} value(s), got {show(fields['kinds'])}")
    return {i for i, k in enumerate(kinds) if k in _NON_SPATIAL_KINDS or "matrix" in k}


def _check_geometry(path: Path, fields: dict[str, str], ndim: int, non_spatial: set[int]) -> None:
    """Spacings (finite, > 0; ``nan`` on component axes), space directions and origin
    (finite vectors of the space dimension), measurement frame (finite)."""
    if "spacings" in fields:
        values = fields["spacings"].split()
        if len(values) != ndim:
            raise corrupt(path, "spacings", f"needs {ndim} value(s), got {show(fields['spacings'])}")
        for axis, token in enumerate(values):
            if not (axis in non_spatial and token.lower() == "nan"):
                check_float(path, "spacings", token, positive=True)
    space_dim = _space_dimension(path, fields)
    if "spacedirections" in fields:
        vectors = _vectors(path, "space directions", fields["spacedirections"], space_dim)
        if len(vectors) != ndim:
            raise corrupt(path, "space directions", f"needs {ndim} entries, got {len(vectors)}")
        spatial = [v for v in vectors if v is not None]
        if len(spatial) == space_dim:
            check_invertible(path, "space directions", [x for v in spatial for x in v], len(spatial))
        elif any(not any(v) for v in spatial):
            raise corrupt(path, "space directions", "holds a zero vector (zero voxel size)")
    origin = fields.get("spaceorigin")
    if origin is not None and len(_vectors(path, "space origin", origin, space_dim, allow_none=False)) != 1:
        raise corrupt(path, "space origin", f"must be one vector, got {show(origin)}")
    if "measurementframe" in fields:
        _vectors(path, "measurement frame", fields["measurementframe"], space_dim, allow_none=False)


def _space_dimension(path: Path, fields: dict[str, str]) -> int | None:
    if "space" in fields:
        name = fields["space"].strip().lower()
        if name not in _SPACE_DIMS:
            raise corrupt(path, "space", f"is not a NRRD space: {show(name)}")
        return _SPACE_DIMS[name]
    if "spacedimension" in fields:
        (dim,) = parse_ints(path, "space dimension", fields["spacedimension"], count=1)
        if dim > 4:
            raise corrupt(path, "space dimension", f"is out of range: {dim}")
        return dim
    return None


def _vectors(
    path: Path, field: str, text: str, size: int | None, allow_none: bool = True
) -> list[list[float] | None]:
    """Parse ``(a,b,c) none (d,e,f)``: finite components, ``size`` of each."""
    if size is None:
        raise corrupt(path, field, "is given without 'space' or 'space dimension'")
    rest = _VECTOR.sub("", text)
    if rest.strip():
        raise corrupt(path, field, f"is not a list of '(x,y,z)' vectors: {show(text)}")
    vectors: list[list[float] | None] = []
    for inner, none in _VECTOR.findall(text):
        if none:
            if not allow_none:
                raise corrupt(path, field, "cannot be 'none'")
            vectors.append(None)
            continue
        parts = inner.split(",")
        if len(parts) != size:
            raise corrupt(path, field, f"needs vectors of {size} components, got {show('(' + inner + ')')}")
        vectors.append([check_float(path, field, p) for p in parts])
    return vectors


def _data_bytes(path: Path, fields: dict[str, str], data_start: int, tail: list[str]) -> int:
    """Bytes available to the data after ``byte skip`` (all of them when it is -1)."""
    skip = parse_ints(path, "byte skip", fields.get("byteskip", "0"), 1, minimum=-1)[0]
    parse_ints(path, "line skip", fields.get("lineskip", "0"), 1, minimum=0)
    reference = fields.get("datafile")
    if reference is not None:
        return external_data_bytes(path, "data file", reference, tail, skip)
    if path.suffix.lower() == ".nhdr":
        raise corrupt(path, "data file", "is missing from a detached header (.nhdr)")
    attached = max(path.stat().st_size - data_start, 0)
    return attached if skip == -1 else max(attached - skip, 0)
