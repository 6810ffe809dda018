"""2D images (PNG, TIFF, JPEG) as single-slice volumes.

A 2D image of ``rows x columns`` becomes a volume of shape ``[rows, columns, 1]``
with an identity affine (1 mm pixels): index i runs down the rows, j along the
columns, so ``volume.array[:, :, 0]`` is the picture as it is displayed.
Multi-page TIFF stacks become ``[rows, columns, pages]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import CorruptFileError
from medseg.io.atomic import atomic_output
from medseg.volume import Volume, VolumeMeta

IMAGE_2D_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def is_image2d(path: str | Path) -> bool:
    """True for file names with a 2D image extension."""
    return Path(path).suffix.lower() in IMAGE_2D_SUFFIXES


def read_image2d(path: str | Path) -> Volume:
    """Read a 2D image (greyscale; colour images are converted to luminance)."""
    import skimage.io

    p = Path(path)
    try:
        arr = np.asarray(skimage.io.imread(str(p)))
    except Exception as exc:
        raise CorruptFileError(f"cannot read image {p}: {exc}") from exc
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and p.suffix.lower() not in (".tif", ".tiff"):
        from skimage.color import rgb2gray

        arr = (
            (rgb2gray(arr[..., :3]) * 255).astype(np.uint8)
            if arr.dtype == np.uint8
            else rgb2gray(arr[..., :3])
        )
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    elif arr.ndim == 3 and p.suffix.lower() in (".tif", ".tiff"):
        arr = np.moveaxis(arr, 0, -1)  # pages last
    else:
        raise CorruptFileError(f"{p}: unexpected image shape {arr.shape}")
    return Volume(arr, np.eye(4), VolumeMeta(source=str(p), source_format="image2d"))


def write_image2d(volume: Volume, path: str | Path) -> Path:
    """Write a single-slice volume as a PNG/TIFF (labels as uint8 when they fit), atomically."""
    import skimage.io

    arr = volume.array
    if arr.ndim != 3 or arr.shape[2] != 1:
        raise ValueError(f"a 2D image needs shape [rows, columns, 1], got {arr.shape}")
    img = arr[:, :, 0]
    if np.issubdtype(img.dtype, np.integer) and img.min() >= 0 and img.max() <= 255:
        img = img.astype(np.uint8)
    p = Path(path)
    with atomic_output(p) as tmp:
        skimage.io.imsave(str(tmp), img, check_contrast=False)
    return p
