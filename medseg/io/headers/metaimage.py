"""MetaImage (``.mha``/``.mhd``) header check, in pure Python.

Follows the MetaIO file format (Kitware, "MetaIO" documentation and
``metaImage.cxx``): ``Key = Value`` lines (MetaIO also accepts ``:``), ending
with ``ElementDataFile``, which is ``LOCAL`` (pixels follow in the same file),
``LIST [N]`` (file names follow, one a line), a printf pattern with
``min max step``, or one file name relative to the header.
"""

from __future__ import annotations

from pathlib import Path

from medseg.io.headers._common import (
    check_available,
    check_decoded_size,
    check_deflate_stream,
    check_invertible,
    check_ndim,
    corrupt,
    data_file,
    external_data_bytes,
    parse_floats,
    parse_ints,
    show,
)

#: MetaIO element types and their sizes in bytes (``MET_ValueTypeSize`` in metaTypes.h);
#: the ``_ARRAY`` forms hold ``ElementNumberOfChannels`` values per pixel.
ELEMENT_BYTES: dict[str, int] = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
ELEMENT_BYTES.update({f"{k}_ARRAY": v for k, v in list(ELEMENT_BYTES.items())})

_BOOLEANS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}
#: How much of the file may be header: a detached .mhd (which may list many files) or a .mha.
_MAX_HEADER_BYTES = {".mhd": 16 * 1024**2, ".mha": 1024**2}
_VECTOR_KEYS = ("Offset", "Origin", "Position", "CenterOfRotation")
_MATRIX_KEYS = ("TransformMatrix", "Rotation", "Orientation")


def check_metaimage_header(path: Path) -> None:
    """Check a MetaImage header before SimpleITK reads it.

    Raises:
        CorruptFileError: a field that is missing, malformed, out of range, or a data
            file that is missing, outside the header's folder or too short.
        UnsupportedFormatError: more dimensions than medseg reads.
    """
    fields, data_start, tail = _parse(path)
    ndim = check_ndim(path, "NDims", _required(path, fields, "NDims"))
    sizes = parse_ints(path, "DimSize", _required(path, fields, "DimSize"), count=ndim)
    element = _required(path, fields, "ElementType").strip()
    if element not in ELEMENT_BYTES:
        raise corrupt(path, "ElementType", f"is not a MetaIO element type: {show(element)}")
    channels = parse_ints(path, "ElementNumberOfChannels", fields.get("ElementNumberOfChannels", "1"), 1)[0]
    for key in ("ElementSpacing", "ElementSize"):
        if key in fields:
            parse_floats(path, key, fields[key], count=ndim, positive=True)
    for key in _VECTOR_KEYS:
        if key in fields:
            parse_floats(path, key, fields[key], count=ndim)
    for key in _MATRIX_KEYS:
        if key in fields:
            check_invertible(path, key, parse_floats(path, key, fields[key], count=ndim * ndim), ndim)
    flags = {k: _boolean(path, fields, k) for k in ("BinaryData", "CompressedData")}
    for key in ("BinaryDataByteOrderMSB", "ElementByteOrderMSB"):
        _boolean(path, fields, key)
    needed = check_decoded_size(path, "DimSize", [*sizes, channels], ELEMENT_BYTES[element])
    available = _data_bytes(path, fields, data_start, tail)
    if flags["BinaryData"] is not False:
        compressed = bool(flags["CompressedData"])
        if compressed and "CompressedDataSize" in fields:
            (claimed,) = parse_ints(path, "CompressedDataSize", fields["CompressedDataSize"], 1)
            if claimed > available:
                raise corrupt(path, "CompressedDataSize", f"is {claimed}, the file holds {available} bytes")
        check_available(path, "ElementDataFile", available, needed, "deflate" if compressed else None)
        reference = fields["ElementDataFile"].strip()
        if compressed and len(reference.split()) == 1 and reference.upper() != "LIST":
            local = reference.upper() == "LOCAL"
            data = path if local else data_file(path, "ElementDataFile", reference)
            check_deflate_stream(path, "ElementDataFile", data, data_start if local else 0, needed)


def _parse(path: Path) -> tuple[dict[str, str], int, list[str]]:
    """Fields up to ``ElementDataFile``, the byte offset after that line, and the lines
    after it (the file list of ``LIST``)."""
    with path.open("rb") as f:
        head = f.read(_MAX_HEADER_BYTES.get(path.suffix.lower(), 1024**2))
    fields: dict[str, str] = {}
    offset = 0
    for number, raw in enumerate(head.split(b"\n"), start=1):
        offset += len(raw) + 1
        line = raw.decode("latin-1").strip()
        if not line:
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if cut < 0:
            raise corrupt(path, f"line {number}", f"is not 'Key = Value': {show(line)}")
        key, value = line[:cut].strip(), line[cut + 1 :].strip()
        if key in fields:
            raise corrupt(path, key, "appears twice")
        fields[key] = value
        if key == "ElementDataFile":
            listed = head[offset:].decode("latin-1").split("\n") if value.upper().startswith("LIST") else []
            tail = [name.strip() for name in listed if name.strip()]
            return fields, min(offset, len(head)), tail
    raise corrupt(path, "ElementDataFile", "is missing (it must end the header)")


def _required(path: Path, fields: dict[str, str], key: str) -> str:
    if key not in fields:
        raise corrupt(path, key, "is missing")
    return fields[key]


def _boolean(path: Path, fields: dict[str, str], key: str) -> bool | None:
    if key not in fields:
        return None
    value = _BOOLEANS.get(fields[key].strip().lower())
    if value is None:
        raise corrupt(path, key, f"must be True or False, got {show(fields[key])}")
    return value


def _data_bytes(path: Path, fields: dict[str, str], data_start: int, tail: list[str]) -> int:
    """Bytes available to the pixel data (after ``HeaderSize`` where it is set)."""
    reference = fields["ElementDataFile"]
    if reference.upper() == "LOCAL":
        return max(path.stat().st_size - data_start, 0)
    skip = parse_ints(path, "HeaderSize", fields.get("HeaderSize", "0"), 1, minimum=-1)[0]
    return external_data_bytes(path, "ElementDataFile", reference, tail, skip)
