"""Reading the label maps an evaluation compares, as integer class ids.

Every format of the format table is read through :func:`medseg.io.read_volume` (2D label
pictures included: they carry no physical spacing, so their pixels are 1 x 1 and distances
are in pixels). This module only checks that what was read is a label map.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medseg.errors import UnsupportedFormatError
from medseg.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["label_array", "read_labels"]


def read_labels(path: str | Path) -> Volume:
    """Read a label map (3D volume or 2D label picture) as a volume of integer class ids.

    A label picture saved in colour with equal channels counts as greyscale; other colour
    pictures are refused.

    Raises:
        MedsegError: unreadable files, 4D volumes, colour pictures or non-integer values.
    """
    from medseg.io import read_volume
    from medseg.io.formats import gray_labels

    p = Path(path)
    volume = gray_labels(read_volume(p), p)
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
