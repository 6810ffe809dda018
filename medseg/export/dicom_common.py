"""DICOM pieces shared by the SEG and RTSTRUCT writers and readers."""

from __future__ import annotations

import datetime
import logging
import re
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import CorruptFileError, InputNotFoundError, MedsegError, UnsupportedFormatError
from medseg.export.reference import PATIENT_STUDY_ATTRIBUTES, header_copy

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

#: Modules of the Patient and Study information entities (their root attributes are
#: dropped from the copies of the source headers, except PATIENT_STUDY_ATTRIBUTES).
_PATIENT_STUDY_MODULES = (
    "patient",
    "clinical-trial-subject",
    "general-study",
    "patient-study",
    "clinical-trial-study",
)


class AlgorithmType(str, Enum):
    """How the mask was made (SEG Segment Algorithm Type / RT ROI Generation Algorithm)."""

    AUTOMATIC = "automatic"
    SEMIAUTOMATIC = "semiautomatic"
    MANUAL = "manual"


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

    exit_code = 14


@lru_cache(maxsize=1)
def _patient_study_keywords() -> frozenset[str]:
    from highdicom._standard_utils import get_module_attribute_map

    table = get_module_attribute_map()
    return frozenset(
        str(item["keyword"])
        for module in _PATIENT_STUDY_MODULES
        for item in table[module]
        if not item["path"]
    )


def minimal_source_header(ds: Any) -> Any:
    """A copy of a source header that keeps, of its patient and study attributes, only
    :data:`PATIENT_STUDY_ATTRIBUTES` (so writers that copy "all patient/study
    attributes" copy only what attaches the new object to its study); those absent
    from the source are added empty (they are Type 2)."""
    out = header_copy(ds, drop=_patient_study_keywords() - set(PATIENT_STUDY_ATTRIBUTES))
    for keyword in PATIENT_STUDY_ATTRIBUTES:  # Type 2: present, empty when unknown
        if keyword not in out:
            setattr(out, keyword, "")
    return out


def copy_patient_study(source: Any, target: Any) -> None:
    """Copy :data:`PATIENT_STUDY_ATTRIBUTES` (and SpecificCharacterSet) from ``source``;
    Type 2 attributes absent from the source are written empty."""
    if "SpecificCharacterSet" in source:
        target.SpecificCharacterSet = source.SpecificCharacterSet
    for keyword in PATIENT_STUDY_ATTRIBUTES:
        value = getattr(source, keyword, None)
        setattr(target, keyword, value if value is not None else "")


def medseg_version() -> str:
    """medseg's version string."""
    from medseg import __version__

    return __version__


def now() -> tuple[str, str]:
    """Current local date and time as DICOM DA and TM strings."""
    t = datetime.datetime.now()
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S")


def algorithm_parameters(model_name: str | None) -> dict[str, str] | None:
    """Algorithm parameters recorded with the algorithm identification."""
    return {"model": model_name} if model_name else None


def derived_series_number(reference_meta: Any) -> int:
    """Series number for a new SEG/RTSTRUCT: 1000 + the source's (so it sorts after it)."""
    number = reference_meta.series_number if reference_meta.series_number is not None else 0
    return int(min(max(number, 0) + 1000, 2**31 - 1))


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


def object_kind(ds: Any) -> str | None:
    """``"SEG"``, ``"RTSTRUCT"`` or None, from SOPClassUID (or Modality)."""
    sop = str(getattr(ds, "SOPClassUID", "") or "")
    modality = str(getattr(ds, "Modality", "") or "").upper()
    if sop == SEG_SOP_CLASS or (not sop and modality == "SEG"):
        return "SEG"
    if sop == RTSTRUCT_SOP_CLASS or (not sop and modality == "RTSTRUCT"):
        return "RTSTRUCT"
    if modality == "SEG" and "SegmentSequence" in ds:
        return "SEG"
    if modality == "RTSTRUCT" and "StructureSetROISequence" in ds:
        return "RTSTRUCT"
    return None


def require_kind(ds: Any, kind: str, path: str | Path) -> None:
    """Raise UnsupportedFormatError unless ``ds`` is a ``kind`` object."""
    found = object_kind(ds)
    if found != kind:
        what = found or f"{getattr(ds, 'Modality', 'unknown modality')} object"
        raise UnsupportedFormatError(f"{path} is a {what}, not a DICOM {kind}")


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
