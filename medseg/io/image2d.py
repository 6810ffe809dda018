"""2D pictures (PNG, TIFF, JPEG, BMP) as single-slice volumes: the one 2D reader and writer.

A picture of ``rows x columns`` becomes a volume of shape ``[rows, columns, 1]`` with an
identity affine (1 x 1 mm pixels: the file stores no geometry): index i runs down the
rows, j along the columns, so ``volume.array[:, :, 0]`` is the picture as displayed.

* Greyscale (8-bit, 16-bit, 32-bit integer or float) keeps its values and type exactly;
  nothing is rescaled. Bilevel images read as 0/1, palette images as their indices (the
  class ids of palette label PNGs).
* Colour becomes channels on axis 3: ``[rows, columns, 1, 3]`` for RGB. An alpha channel
  is dropped (a greyscale picture with alpha reads as greyscale).
* A multi-page TIFF stacks its pages along k: ``[rows, columns, pages]``.

The decoder follows the file's content: TIFF with tifffile (Pillow for the compressions
tifffile decodes only with the optional imagecodecs package, such as LZW), everything else
with Pillow. This module knows no file suffixes: the format table
(:mod:`medseg.io.formats`) binds each row's name (``kind``) to the reader and writer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import CorruptFileError, InputNotFoundError, MedsegError, UnsupportedFormatError
from medseg.io.atomic import atomic_output
from medseg.volume import Volume, VolumeMeta

log = logging.getLogger(__name__)

__all__ = ["read_image2d", "write_image2d"]

# TIFF and BigTIFF magic numbers, little and big endian
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Pillow's format names -> the format table's names
_PILLOW_KINDS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "BMP": "bmp"}
# TIFF ExtraSamples values that mean alpha (associated, unassociated)
_ALPHA_SAMPLES = (1, 2)


# -- reading -------------------------------------------------------------------------------------
def read_image2d(path: str | Path, kind: str | None = None) -> Volume:
    """Read a PNG, TIFF, JPEG or BMP file (see the module docstring for the layout).

    The decoder follows the file's content (TIFF magic: tifffile, else Pillow). ``kind`` is the
    format table's name recorded as ``meta.source_format`` (default: what the content is).

    Raises:
        InputNotFoundError: no such file.
        CorruptFileError: the file cannot be decoded.
        UnsupportedFormatError: a layout medseg does not read (animated PNG, 16-bit colour PNG,
            TIFF with several stacked dimensions).
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"no such file: {p}", hint="check the path")
    with open(p, "rb") as f:
        head = f.read(8)
    warnings: list[str] = []
    if head[:4] in _TIFF_MAGIC:
        pages, found = _read_tiff(p, warnings), "tiff"
    else:
        picture, found = _read_pillow(p, head)
        pages = picture[np.newaxis]
    # pages: [pages, rows, columns] or [pages, rows, columns, channels]
    if pages.ndim == 4 and pages.shape[3] == 1:
        pages = pages[..., 0]
    array = np.moveaxis(pages, 0, 2)  # [rows, columns, pages(, channels)]
    if array.dtype == bool:
        array = array.astype(np.uint8)
    meta = VolumeMeta(source=str(p), source_format=kind or found, warnings=warnings)
    return Volume(np.ascontiguousarray(array), np.eye(4), meta)


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24], head[25]


def _read_pillow(path: Path, head: bytes) -> tuple[np.ndarray, str]:
    """One picture as ``[rows, columns]`` or ``[rows, columns, 3]``, and its kind."""
    from PIL import Image, UnidentifiedImageError

    if head.startswith(b"\x89PNG"):
        header = _png_header(path)
        if header is not None and header[0] == 16 and header[1] in (2, 6):
            raise UnsupportedFormatError(
                f"{path} is a 16-bit colour PNG, which Pillow can only read cut to 8 bits",
                hint="save it as a 16-bit TIFF (or as one greyscale PNG per channel)",
            )
    try:
        with Image.open(path) as img:
            kind = _PILLOW_KINDS.get(str(img.format), str(img.format).lower())
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                raise UnsupportedFormatError(
                    f"{path} holds {n_frames} frames; medseg reads one picture per {kind.upper()} file",
                    hint="save the frames as separate files or as a multi-page TIFF",
                )
            _check_size(path, (img.size[1], img.size[0], len(img.getbands())), 4)
            return _pixels(img), kind
    except MedsegError:
        raise
    except UnidentifiedImageError as exc:
        raise CorruptFileError(f"{path} is not a readable image: {exc}", hint="check the file") from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... for damaged data
        raise CorruptFileError(
            f"cannot read {path}: {str(exc)[:200]}", hint="check that the file is complete"
        ) from exc


def _pixels(img) -> np.ndarray:  # img: PIL.Image.Image
    """The values of one Pillow frame: grey ``[rows, columns]`` or colour ``[rows, columns, 3]``."""
    mode = img.mode
    if mode in ("1", "L", "P", "F"):
        return np.asarray(img)
    if mode in ("LA", "La", "PA"):
        return np.asarray(img)[..., 0]
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)  # native byte order
    if mode == "I":
        a = np.asarray(img)
        if img.format == "PNG" and a.size and a.min() >= 0 and a.max() <= 65535:
            a = a.astype(np.uint16)  # a 16-bit PNG opened as 32-bit by some Pillow versions
        return a
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        return np.asarray(img)[..., :3]
    return np.asarray(img.convert("RGB"))  # CMYK, YCbCr, LAB, HSV


#: More pages than any 2D stack medseg reads: a damaged chain of image directories can point
#: back into itself without tifffile noticing, and then yields pages forever (found by fuzzing).
MAX_TIFF_PAGES = 10_000


def _check_page_count(path: Path, tif: Any) -> None:
    for count, _ in enumerate(tif.pages, start=1):
        if count > MAX_TIFF_PAGES:
            raise CorruptFileError(
                f"cannot read TIFF {path}: its chain of image directories runs past {MAX_TIFF_PAGES} "
                "pages (a damaged file whose directories point back into themselves)",
                hint="check that the file is complete, or re-export it",
            )


def _read_tiff(path: Path, warnings: list[str]) -> np.ndarray:
    """Pages as ``[pages, rows, columns(, channels)]``."""
    import tifffile

    quiet = logging.getLogger("tifffile")  # it logs every oddity of a damaged file
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            _check_page_count(path, tif)
            if not tif.series:
                raise CorruptFileError(f"{path} holds no image", hint="check the file")
            if len(tif.series) > 1:
                warnings.append(f"{path.name} holds {len(tif.series)} image series; the first is read")
            series = tif.series[0]
            axes = series.axes
            nbytes = _check_size(path, series.shape, np.dtype(series.dtype).itemsize)
            if int(tif.pages[0].compression) == 1 and nbytes > path.stat().st_size:  # 1: uncompressed
                raise CorruptFileError(
                    f"cannot read TIFF {path}: it claims {nbytes} bytes of uncompressed pixels and "
                    f"holds {path.stat().st_size} bytes",
                    hint="check that the file is complete",
                )
            extrasamples = tuple(getattr(tif.pages[0], "extrasamples", ()) or ())
            array = series.asarray()
    except MedsegError:
        raise
    except ValueError as exc:
        if "imagecodecs" in str(exc):  # e.g. LZW: Pillow decodes it without extra packages
            return _read_tiff_pillow(path)
        raise CorruptFileError(f"cannot read TIFF {path}: {str(exc)[:200]}", hint="check the file") from exc
    except Exception as exc:  # tifffile raises many types for damaged files
        raise CorruptFileError(f"cannot read TIFF {path}: {str(exc)[:200]}", hint="check the file") from exc
    finally:
        quiet.setLevel(level)
    if array is None or array.ndim != len(axes):
        raise CorruptFileError(
            f"cannot read TIFF {path}: its pages do not form an image", hint="check the file"
        )
    return _tiff_layout(path, array, axes, extrasamples)


def _check_size(path: Path, shape: tuple[int, ...], item_bytes: int) -> int:
    """The decoded size (bytes) of a picture; refused past the limit (a damaged or hostile header)."""
    from medseg.io.headers import MAX_BYTES_ENV, max_image_bytes

    size = int(np.prod([int(n) for n in shape], dtype=object)) * int(item_bytes)
    if size > max_image_bytes():
        raise CorruptFileError(
            f"{path.name} claims an image of {'x'.join(str(int(n)) for n in shape)} "
            f"({size / 1024**3:.3g} GiB decoded), past the limit",
            hint=f"check the file; a real image that large needs {MAX_BYTES_ENV} raised",
        )
    return size


def _tiff_layout(path: Path, array: np.ndarray, axes: str, extrasamples: tuple[int, ...]) -> np.ndarray:
    """Reorder tifffile's axes into ``[pages, Y, X(, channels)]``; alpha samples dropped."""
    keep = [n for n, a in enumerate(axes) if a in "YX" or array.shape[n] > 1]
    array = array.reshape([array.shape[n] for n in keep])
    axes = "".join(axes[n] for n in keep)
    channel_axes = [n for n, a in enumerate(axes) if a in "SC"]
    page_axes = [n for n, a in enumerate(axes) if a not in "YXSC"]
    if len(channel_axes) > 1 or len(page_axes) > 1:
        raise UnsupportedFormatError(
            f"{path} is a TIFF with dimensions {axes!r} {array.shape}; medseg reads 2D images, "
            "colour images and stacks of pages",
            hint="save one stack (or one channel) per file, or convert it to NIfTI",
        )
    order = [*page_axes, axes.index("Y"), axes.index("X"), *channel_axes]
    array = np.transpose(array, order)
    if not page_axes:
        array = array[np.newaxis]
    if channel_axes:
        n_alpha = sum(1 for s in extrasamples if s in _ALPHA_SAMPLES)
        if n_alpha and array.shape[-1] > n_alpha:
            array = array[..., : array.shape[-1] - n_alpha]
        if array.shape[-1] == 1:
            array = array[..., 0]
    return array


def _read_tiff_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as img:
            _check_size(path, (getattr(img, "n_frames", 1), img.size[1], img.size[0], len(img.getbands())), 4)
            frames = [_pixels(frame) for frame in ImageSequence.Iterator(img)]
    except MedsegError:
        raise
    except Exception as exc:  # Pillow raises many types for damaged data
        raise CorruptFileError(f"cannot read TIFF {path}: {str(exc)[:200]}", hint="check the file") from exc
    if len({(f.shape, f.dtype) for f in frames}) > 1:
        raise UnsupportedFormatError(
            f"{path} holds pages of different sizes or types", hint="save one page per file"
        )
    return np.stack(frames)


# -- writing -------------------------------------------------------------------------------------
def write_image2d(volume: Volume, path: str | Path, kind: str) -> Path:
    """Write a volume as a ``png``, ``tiff`` or ``bmp`` picture (``kind``, the format table's
    name), atomically; the values are kept exactly.

    * PNG: one slice ``[rows, columns, 1]``, greyscale whole numbers 0-255 (stored 8-bit) or
      0-65535 (16-bit), or 8-bit RGB(A) channels.
    * BMP: one slice, 8-bit greyscale or RGB.
    * TIFF: any number of slices (one page each) and any numeric type (float included).

    The picture keeps no geometry: spacing and origin are dropped (a warning is logged
    when they are not the identity a picture reads back with).

    Raises:
        UnsupportedFormatError: values or a shape the format cannot hold, naming the way out.
    """
    p = Path(path)
    if kind not in ("png", "tiff", "bmp"):
        raise UnsupportedFormatError(
            f"cannot write {p.name}: medseg writes pictures as PNG, TIFF or BMP, not {kind.upper()}",
            hint="write .png or .tif",
        )
    array = volume.array
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    channels = array.shape[3] if array.ndim == 4 else 1
    if kind == "tiff":
        _warn_geometry(volume, p, kind)
        return _write_tiff(array, channels, p)
    if array.shape[2] != 1:
        raise UnsupportedFormatError(
            f"cannot write {p.name}: a {kind.upper()} holds one 2D slice and this image has "
            f"{array.shape[2]} slices ({'x'.join(map(str, volume.shape))})",
            hint="write .nii.gz (or a multi-page .tif)",
        )
    pixels = array[:, :, 0]
    if channels not in (1, 3, 4):
        raise UnsupportedFormatError(
            f"cannot write {p.name}: a {kind.upper()} holds grey or RGB(A) pixels, this image has "
            f"{channels} channels",
            hint="write .tif or .nii.gz",
        )
    limit = 65535 if kind == "png" and channels == 1 else 255
    pixels = _whole_numbers(pixels, limit, p, kind)
    if kind == "bmp" and channels == 4:
        pixels = pixels[..., :3]
    from PIL import Image

    img = Image.fromarray(pixels)
    _warn_geometry(volume, p, kind)
    with atomic_output(p) as tmp:
        img.save(tmp, format=kind.upper())
    return p


def _warn_geometry(volume: Volume, path: Path, kind: str) -> None:
    """Log that spacing and origin are lost, unless they are a picture's own (identity)."""
    if not np.allclose(volume.affine, np.eye(4), atol=1e-6):
        log.warning(
            "%s: a %s stores no geometry; spacing %s mm and origin %s are dropped",
            path.name,
            kind.upper(),
            tuple(round(s, 4) for s in volume.spacing),
            tuple(round(o, 3) for o in volume.origin),
        )


def _whole_numbers(pixels: np.ndarray, limit: int, path: Path, kind: str) -> np.ndarray:
    """``pixels`` as uint8 (values up to 255) or uint16 (up to ``limit`` = 65535), exactly."""
    if pixels.dtype == bool:
        return pixels.astype(np.uint8)
    if pixels.size == 0:
        return pixels.astype(np.uint8)
    lo, hi = pixels.min(), pixels.max()
    if np.issubdtype(pixels.dtype, np.floating) and not (
        np.all(np.isfinite(pixels)) and np.array_equal(pixels, np.rint(pixels))
    ):
        raise UnsupportedFormatError(
            f"cannot write {path.name}: a {kind.upper()} stores whole numbers and this image holds "
            f"fractional values ({pixels.dtype})",
            hint="write .tif (float) or .nii.gz",
        )
    if lo < 0 or hi > limit:
        raise UnsupportedFormatError(
            f"cannot write {path.name}: a {kind.upper()} stores values 0-{limit} and this image holds "
            f"{lo:g} to {hi:g}",
            hint="write .tif or .nii.gz",
        )
    return pixels.astype(np.uint8 if hi <= 255 else np.uint16)


def _write_tiff(array: np.ndarray, channels: int, path: Path) -> Path:
    import tifffile

    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype in (np.int64, np.uint64) and array.size:
        lo, hi = int(array.min()), int(array.max())
        for candidate in (np.uint8, np.uint16, np.uint32, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                array = array.astype(candidate)
                break
    pages = np.moveaxis(array, 2, 0)  # [pages, rows, columns(, channels)]
    if pages.shape[0] == 1:
        pages = pages[0]
    photometric = "rgb" if channels == 3 else "minisblack"
    with atomic_output(path) as tmp:
        tifffile.imwrite(
            tmp,
            np.ascontiguousarray(pages),
            photometric=photometric,
            planarconfig="contig" if channels > 1 else None,
            compression="zlib",
            metadata=None,
        )
    return path
