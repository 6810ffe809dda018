"""DICOM label objects (SEG, RTSTRUCT): reading the file, telling which it is, and
combining their structures into one label map.

Shared by the readers in this package and by the writers in :mod:`medseg.export`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import CorruptFileError, InputNotFoundError, MedsegError, UnsupportedFormatError

log = logging.getLogger(__name__)

#: Segmentation Storage SOP Class (PS3.4 B.5; IOD PS3.3 A.51).
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: RT Structure Set Storage SOP Class (PS3.4 B.5; IOD PS3.3 A.19).
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


class LabelObjectKind(str, Enum):
    """The DICOM objects medseg reads as label maps (their Modality, PS3.3 C.7.3.1.1.1)."""

    SEG = "SEG"
    RTSTRUCT = "RTSTRUCT"


class OverlapPolicy(str, Enum):
    """What importing does where segments/ROIs overlap.

    ``error``: refuse, naming the overlapping structures (default); ``last``: the
    structure with the higher label value wins; ``split``: return a 4D volume with one
    binary channel per structure (no overlap is lost).
    """

    ERROR = "error"
    LAST = "last"
    SPLIT = "split"


class OverlapError(MedsegError):
    """Segments or ROIs overlap and cannot become one label map without a choice."""

    exit_code = 16  # unique per class: docs/troubleshooting.md


def read_dicom_object(path: str | Path) -> Any:
    """Read a whole DICOM file (tolerating files without preamble), as pydicom Dataset.

    Raises:
        InputNotFoundError / CorruptFileError.
    """
    import pydicom

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"no such file: {p}", hint="check the path")
    try:
        return pydicom.dcmread(str(p), force=True)
    except Exception as exc:
        raise CorruptFileError(f"{p}: cannot read DICOM: {exc}") from None


def object_kind(ds: Any) -> LabelObjectKind | None:
    """SEG, RTSTRUCT or None, from SOPClassUID (or Modality); the kinds compare equal to
    the strings ``"SEG"`` and ``"RTSTRUCT"``."""
    sop = str(getattr(ds, "SOPClassUID", "") or "")
    modality = str(getattr(ds, "Modality", "") or "").upper()
    if sop == SEG_SOP_CLASS or (not sop and modality == "SEG"):
        return LabelObjectKind.SEG
    if sop == RTSTRUCT_SOP_CLASS or (not sop and modality == "RTSTRUCT"):
        return LabelObjectKind.RTSTRUCT
    if modality == "SEG" and "SegmentSequence" in ds:
        return LabelObjectKind.SEG
    if modality == "RTSTRUCT" and "StructureSetROISequence" in ds:
        return LabelObjectKind.RTSTRUCT
    return None


def require_kind(ds: Any, kind: LabelObjectKind | str, path: str | Path) -> None:
    """Raise UnsupportedFormatError unless ``ds`` is a ``kind`` object."""
    found = object_kind(ds)
    if found != LabelObjectKind(kind):
        what = found.value if found else f"{getattr(ds, 'Modality', 'unknown modality')} object"
        raise UnsupportedFormatError(f"{path} is a {what}, not a DICOM {LabelObjectKind(kind).value}")


def combine_structures(
    masks: list[np.ndarray], values: list[int], names: list[str], policy: OverlapPolicy | str, source: str
) -> tuple[np.ndarray, bool]:
    """Combine binary masks into a label map (``values[n]`` for ``masks[n]``), or stack them.

    Returns the array and whether it is stacked (``split``: ``[..., n]`` uint8 channels).

    Raises:
        OverlapError: masks overlap and ``policy`` is ``error``.
    """
    policy = OverlapPolicy(policy)
    shape = masks[0].shape if masks else ()
    if policy is OverlapPolicy.SPLIT:
        return np.stack([m.astype(np.uint8) for m in masks], axis=-1), True
    dtype = np.uint8 if max(values, default=0) <= 255 else np.uint16
    out = np.zeros(shape, dtype=dtype)
    order = np.argsort(values, kind="stable")
    if policy is OverlapPolicy.ERROR:
        count = np.zeros(shape, dtype=np.uint16)
        for m in masks:
            count += m.astype(bool)
        if np.any(count > 1):
            pair = _first_overlap(masks, names)
            raise OverlapError(
                f"{source}: {pair[0]!r} and {pair[1]!r} overlap ({int(np.sum(count > 1))} voxels "
                "belong to several structures), so they cannot form one label map",
                hint="choose --overlap last (higher label value wins) or --overlap split "
                "(one channel per structure), or name only the wanted structures in --labels",
            )
    for n in order:
        out[masks[n].astype(bool)] = values[n]
    return out, False


def _first_overlap(masks: list[np.ndarray], names: list[str]) -> tuple[str, str]:
    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            if np.any(masks[a].astype(bool) & masks[b].astype(bool)):
                return names[a], names[b]
    return names[0], names[-1]


_MEDSEG_VALUE = re.compile(r"medseg label value (\d+)")


def recorded_label_value(text: str | None) -> int | None:
    """The label value medseg recorded in a description (``... medseg label value 5``)."""
    if not text:
        return None
    m = _MEDSEG_VALUE.search(str(text))
    return int(m.group(1)) if m else None


def label_value_note(value: int) -> str:
    """The text medseg records to restore a label value on import."""
    return f"medseg label value {value}"


def label_object_meta(
    base: Any, ds: Any, kind: LabelObjectKind, source: str, notes: list[str], structures: list[dict[str, Any]]
) -> Any:
    """Metadata of a label map read from a SEG or RTSTRUCT: ``base`` (the grid's
    :class:`~medseg.volume.VolumeMeta`) with the object's identity, notes and structures."""
    return replace(
        base,
        modality=kind.value,
        source=source,
        source_format=f"dicom-{kind.value.lower()}",
        series_uid=str(getattr(ds, "SeriesInstanceUID", "")) or None,
        series_description=str(getattr(ds, "SeriesDescription", "")) or None,
        warnings=notes,
        extra={"structures": structures},
    )
