"""DICOM pieces shared by the SEG and RTSTRUCT writers.

The pieces readers need too (reading a file, its kind, overlap handling, the recorded
label value) live in :mod:`medseg.io.dicom.objects` and are re-exported here.
"""

from __future__ import annotations

import datetime
import logging
from enum import Enum
from functools import lru_cache
from typing import Any

from medseg.io.dicom.objects import (
    RTSTRUCT_SOP_CLASS,
    SEG_SOP_CLASS,
    LabelObjectKind,
    OverlapError,
    OverlapPolicy,
    combine_structures,
    label_value_note,
    object_kind,
    read_dicom_object,
    recorded_label_value,
    require_kind,
)
from medseg.io.dicom.reference import PATIENT_STUDY_ATTRIBUTES, header_copy

log = logging.getLogger(__name__)

__all__ = [
    "RTSTRUCT_SOP_CLASS",
    "SEG_SOP_CLASS",
    "AlgorithmType",
    "LabelObjectKind",
    "OverlapError",
    "OverlapPolicy",
    "algorithm_parameters",
    "combine_structures",
    "copy_patient_study",
    "derived_series_number",
    "label_value_note",
    "medseg_version",
    "minimal_source_header",
    "now",
    "object_kind",
    "read_dicom_object",
    "recorded_label_value",
    "require_kind",
]

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
