"""The source series of an export: re-exported from :mod:`medseg.io.dicom.reference`
(readers and writers share it; it lives in core)."""

from medseg.io.dicom.reference import (
    PATIENT_STUDY_ATTRIBUTES,
    ReferenceSeries,
    array_from_frames,
    describe_grid,
    frames_from_array,
    grid_tolerance,
    header_copy,
    load_reference,
    place_on_grid,
)

__all__ = [
    "PATIENT_STUDY_ATTRIBUTES",
    "ReferenceSeries",
    "array_from_frames",
    "describe_grid",
    "frames_from_array",
    "grid_tolerance",
    "header_copy",
    "load_reference",
    "place_on_grid",
]
