"""Reading the files an evaluation compares: label volumes and 2D label images.

3D scans go through :func:`medseg.io.read_volume`. 2D label images (PNG, TIFF: the
usual format of microscopy, endoscopy or X-ray masks) are read here with Pillow; they
carry no physical spacing, so their pixels are 1 x 1 (distances in pixels).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medseg.errors import CorruptFileError, InputNotFoundError, UnsupportedFormatError
from medseg.volume import Volume, VolumeMeta

log = logging.getLogger(__name__)

__all__ = ["IMAGE_2D_SUFFIXES", "is_2d_image", "label_array", "read_image", "read_labels"]

#: Extensions read as 2D images (with Pillow).
IMAGE_2D_SUFFIXES = (".png", ".tif", ".tiff")


def is_2d_image(path: str | Path) -> bool:
    """Whether ``path`` names a 2D image format (PNG, TIFF)."""
    return Path(path).suffix.lower() in IMAGE_2D_SUFFIXES


def _open_2d(path: Path, labels: bool) -> Volume:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputNotFoundError(f"no such file: {path}", hint="check the path")
    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) > 1:
                raise UnsupportedFormatError(
                    f"{path} holds {img.n_frames} frames; medseg reads 2D images from PNG/TIFF",
                    hint="save volumes as NIfTI (.nii.gz) instead of multi-page TIFF",
                )
            mode = img.mode
            if labels:
                if mode in ("RGB", "RGBA"):
                    rgb = np.asarray(img.convert("RGB"))
                    if not (
                        np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
                    ):
                        raise UnsupportedFormatError(
                            f"{path} is a colour image, not a label image",
                            hint="save labels as a grayscale or palette (indexed) PNG holding class ids",
                        )
                    array = rgb[..., 0]
                elif mode == "LA":
                    array = np.asarray(img.getchannel("L"))
                else:  # "1", "L", "P" (palette indices), "I;16", "I"
                    array = np.asarray(img)
            else:
                array = np.asarray(img.convert("F") if mode not in ("I;16", "I", "F") else img)
    except UnidentifiedImageError as exc:
        raise CorruptFileError(f"{path} is not a readable image: {exc}", hint="check the file") from exc
    except OSError as exc:
        raise CorruptFileError(f"cannot read {path}: {exc}", hint="check the file") from exc
    if array.ndim != 2:
        raise UnsupportedFormatError(f"{path} is not a 2D image (shape {array.shape})")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    fmt = "png" if path.suffix.lower() == ".png" else "tiff"
    return Volume(
        np.asarray(array)[:, :, np.newaxis], np.eye(4), VolumeMeta(source=str(path), source_format=fmt)
    )


def read_image(path: str | Path) -> Volume:
    """Read a scan for display: a 2D image (grayscale float) or anything :func:`read_volume` reads."""
    p = Path(path)
    if is_2d_image(p):
        return _open_2d(p, labels=False)
    from medseg.io import read_volume

    return read_volume(p)


def read_labels(path: str | Path) -> Volume:
    """Read a label map (3D volume or 2D label image) as a volume of integer class ids.

    Raises:
        MedsegError: unreadable files, 4D volumes, or non-integer voxel values.
    """
    p = Path(path)
    if is_2d_image(p):
        volume = _open_2d(p, labels=True)
    else:
        from medseg.io import read_volume

        volume = read_volume(p)
    return volume.with_array(label_array(volume, p))


def label_array(volume: Volume, path: str | Path) -> np.ndarray:
    """The voxel array of ``volume`` as integer labels (float labels must be whole numbers).

    Raises:
        UnsupportedFormatError: a 4D volume, or values that are not whole non-negative numbers.
    """
    a = volume.array
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim != 3:
        raise UnsupportedFormatError(
            f"{path} holds {volume.n_volumes} volumes; a label map must be a single 3D volume",
            hint="split the 4D file or export one label map per case",
        )
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        if a.size and a.min() < 0:
            raise UnsupportedFormatError(f"{path} holds negative labels", hint="labels must be ids >= 0")
        return a.astype(np.int16 if a.dtype.itemsize == 1 else np.int32, copy=False)
    rounded = np.rint(a)
    if not np.all(np.isfinite(a)) or np.max(np.abs(a - rounded), initial=0.0) > 1e-3 or rounded.min() < 0:
        raise UnsupportedFormatError(
            f"{path} holds non-integer values, so it is not a label map (a probability map?)",
            hint="threshold or argmax it into class ids before evaluating",
        )
    log.debug("%s stores labels as %s; rounded to integers", path, a.dtype)
    return rounded.astype(np.int32)
