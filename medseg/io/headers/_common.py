"""Shared pieces of the header checks: limits, number parsing, data-file references.

Every check raises :class:`~medseg.errors.CorruptFileError` with one line that names
the file and the header field, before any native reader sees the file.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from medseg.errors import CorruptFileError, UnsupportedFormatError

#: Largest decoded image (bytes) medseg agrees to read: 4 GiB unless the environment
#: variable ``MEDSEG_MAX_IMAGE_BYTES`` says otherwise (an integer, e.g. ``17179869184``).
DEFAULT_MAX_IMAGE_BYTES = 4 * 1024**3
MAX_BYTES_ENV = "MEDSEG_MAX_IMAGE_BYTES"

#: DEFLATE (gzip/zlib) cannot expand data more than 1032:1 (RFC 1951: a 258-byte match
#: costs at least 2 bits), so a compressed stream this small cannot hold the claimed image.
DEFLATE_MAX_RATIO = 1032

#: Dimensions medseg reads: 2D, 3D and 4D images (1D headers are refused by the reader).
MAX_NDIM = 4

_HINT = "the file's header is damaged or hostile: re-export or re-transfer the file"
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def show(text: str, limit: int = 40) -> str:
    """``text`` quoted for a one-line message: non-printables escaped, long values cut."""
    text = _PRINTABLE.sub("?", text.strip())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def corrupt(path: Path, field: str, problem: str) -> CorruptFileError:
    """The error for header field ``field`` of ``path``: ``NAME: header field 'F' PROBLEM``."""
    return CorruptFileError(f"{path.name}: header field '{field}' {problem}", hint=_HINT)


def max_image_bytes() -> int:
    """The decoded-size limit: ``$MEDSEG_MAX_IMAGE_BYTES`` or :data:`DEFAULT_MAX_IMAGE_BYTES`."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        from medseg.errors import ConfigError

        raise ConfigError(
            f"{MAX_BYTES_ENV}={text!r} is not a positive number of bytes",
            hint=f"unset it or give an integer such as {DEFAULT_MAX_IMAGE_BYTES}",
        )
    return value


def parse_ints(path: Path, field: str, text: str, count: int | None = None, minimum: int = 1) -> list[int]:
    """Whitespace-separated integers ``>= minimum`` (``count`` of them when given).

    Integral decimals such as ``35.0`` are accepted, as the C readers (``atoi``/``atof``)
    accept them; anything else (``1e30`` beyond 2**31, ``nan``, words) is refused.
    """
    tokens = text.split()
    if count is not None and len(tokens) != count:
        raise corrupt(path, field, f"needs {count} value(s), got {show(text)}")
    if not tokens:
        raise corrupt(path, field, "is empty")
    values = []
    for token in tokens:
        try:
            number = float(token)
        except ValueError:
            raise corrupt(path, field, f"is not an integer: {show(token)}") from None
        if not math.isfinite(number) or number != int(number) or abs(number) >= 2**31:
            raise corrupt(path, field, f"is not an integer in range: {show(token)}")
        if number < minimum:
            raise corrupt(path, field, f"must be at least {minimum}, got {show(token)}")
        values.append(int(number))
    return values


def parse_floats(
    path: Path, field: str, text: str, count: int | None = None, positive: bool = False
) -> list[float]:
    """Whitespace-separated finite numbers (``> 0`` when ``positive``)."""
    tokens = text.split()
    if count is not None and len(tokens) != count:
        raise corrupt(path, field, f"needs {count} value(s), got {show(text)}")
    return [check_float(path, field, token, positive) for token in tokens]


def check_float(path: Path, field: str, token: str, positive: bool = False) -> float:
    """One finite number (``> 0`` when ``positive``)."""
    try:
        number = float(token)
    except ValueError:
        raise corrupt(path, field, f"is not a number: {show(token)}") from None
    if not math.isfinite(number):
        raise corrupt(path, field, f"must be finite, got {show(token)}")
    if positive and number <= 0:
        raise corrupt(path, field, f"must be positive, got {show(token)}")
    return number


def check_invertible(path: Path, field: str, values: Sequence[float], size: int) -> None:
    """Refuse a ``size`` x ``size`` direction matrix that is singular (a zero voxel axis or
    two parallel axes): no affine can be built from it."""
    import numpy as np

    matrix = np.asarray(values, dtype=np.float64).reshape(size, size)
    scale = float(np.abs(matrix).max()) or 1.0
    if abs(float(np.linalg.det(matrix / scale))) < 1e-9:
        raise corrupt(path, field, "is a singular matrix (an axis of length zero or two parallel axes)")


def check_ndim(path: Path, field: str, text: str, maximum: int = MAX_NDIM) -> int:
    """A dimension count: one integer >= 1; above ``maximum`` is unsupported (not corrupt)."""
    (ndim,) = parse_ints(path, field, text, count=1)
    if ndim > 16:  # ITK's and teem's own limit: a larger value is damage, not a real image
        raise corrupt(path, field, f"is out of range: {ndim}")
    if ndim > maximum:
        raise UnsupportedFormatError(
            f"{path.name}: header field '{field}' is {ndim}; medseg reads up to {maximum} dimensions",
            hint="split the image into 3D/4D volumes first",
        )
    return ndim


def check_decoded_size(path: Path, field: str, sizes: Sequence[int], item_bytes: int) -> int:
    """The decoded size in bytes of an array of ``sizes``; refused above :func:`max_image_bytes`."""
    total = math.prod(sizes) * item_bytes
    limit = max_image_bytes()
    if total > limit:
        raise CorruptFileError(
            f"{path.name}: header field '{field}' {' x '.join(map(str, sizes))} claims "
            f"{total / 1024**3:.3g} GiB of pixels, over the {limit / 1024**3:.3g} GiB limit",
            hint=f"if the image is real, raise the limit with {MAX_BYTES_ENV}=BYTES",
        )
    return total


def data_file(path: Path, field: str, reference: str) -> Path:
    """The data file ``reference`` named in the header of ``path``, which must exist
    inside the header's folder (no absolute path elsewhere, no ``..`` escape)."""
    folder = Path(os.path.abspath(path.parent))
    target = Path(os.path.normpath(folder / reference.strip()))
    if not reference.strip() or "\0" in reference:
        raise corrupt(path, field, f"is not a file name: {show(reference)}")
    if not target.is_relative_to(folder):
        raise corrupt(path, field, f"points outside the header's folder: {show(reference)}")
    if not target.is_file():
        raise CorruptFileError(
            f"{path.name}: header field '{field}' names a missing data file {show(reference)}",
            hint="copy the data file next to the header, or re-export the image as one file",
        )
    return target


def external_data_bytes(path: Path, field: str, reference: str, listed: list[str], skip: int) -> int:
    """Bytes of pixel data in the files a header names: one file, ``LIST`` (the names in
    ``listed``, one a line after the header) or a printf pattern ``name%03d.raw min max step``
    (MetaIO and NRRD share these forms), less ``skip`` header bytes per file (``-1``: the
    data are the last bytes of each file)."""
    tokens = reference.split()
    if tokens and tokens[0].upper() == "LIST":
        names = listed
    elif len(tokens) >= 4 and "%" in tokens[0]:
        first, last, step = parse_ints(path, field, " ".join(tokens[1:4]), 3, minimum=-(2**31))
        if step == 0 or (last - first) * step < 0 or abs((last - first) // step) > 100_000:
            raise corrupt(path, field, f"has an impossible file range {first} {last} {step}")
        try:
            names = [tokens[0] % i for i in range(first, last + (1 if step > 0 else -1), step)]
        except (TypeError, ValueError):
            raise corrupt(path, field, f"has a bad file pattern {show(tokens[0])}") from None
    else:
        names = [reference]
    if not names:
        raise corrupt(path, field, "is LIST but no file names follow the header")
    total = sum(data_file(path, field, name).stat().st_size for name in names)
    return total if skip == -1 else max(total - skip * len(names), 0)


def check_deflate_stream(path: Path, field: str, data: Path, offset: int, needed: int) -> None:
    """Decode a DEFLATE stream (zlib or gzip wrapping) in 1 MiB steps and refuse it unless it
    decodes cleanly to exactly ``needed`` bytes. Memory stays bounded; the cost is one pass
    over the data. ITK's MetaIO loops forever on some damaged streams (found by the fuzz
    campaign), so MetaImage data is checked here before SimpleITK sees it."""
    import zlib

    decoder = zlib.decompressobj(47)  # 32 + 15: zlib or gzip header, detected
    produced = 0
    try:
        with data.open("rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(1 << 20):
                while chunk and not decoder.eof:
                    produced += len(decoder.decompress(chunk, 1 << 22))
                    chunk = decoder.unconsumed_tail
                    if produced > needed:
                        break
                if decoder.eof or produced > needed:
                    break
    except zlib.error as exc:
        raise corrupt(path, field, f"holds a damaged compressed stream ({exc})") from None
    if produced != needed or not decoder.eof:
        raise corrupt(
            path, field, f"decompresses to {produced} bytes or more, not the {needed} its sizes need"
        )


def check_available(
    path: Path, field: str, available: int, needed: int, compression: str | None = None
) -> None:
    """Refuse data that cannot hold ``needed`` decoded bytes: raw data shorter than that,
    or a DEFLATE stream too small for it even at the maximal ratio."""
    if compression is None and available < needed:
        raise corrupt(path, field, f"needs {needed} bytes of raw data, the file holds {available}")
    if compression == "deflate" and needed > DEFLATE_MAX_RATIO * available + 1024:
        raise corrupt(path, field, f"claims {needed} bytes, more than {available} compressed bytes can hold")
