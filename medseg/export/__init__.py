"""Clinical export and import: DICOM SEG and RTSTRUCT that reference the source series.

* :func:`export_mask` / :class:`MaskExporter`: a label map on a DICOM series' grid ->
  DICOM SEG (highdicom) or RT Structure Set, referencing the exact source instances.
* :func:`read_label_object`: a SEG or RTSTRUCT -> label map on the source grid.
* :func:`load_labels`: labels files (names, colours, SNOMED CT codes).

See ``docs/export.md``.
"""

from medseg.export.dicom_common import AlgorithmType, OverlapError, OverlapPolicy
from medseg.export.exporter import (
    ExportFormat,
    MaskExporter,
    export_mask,
    label_object_kind,
    parse_formats,
    read_label_object,
)
from medseg.export.labels import CodeSpec, LabelSet, LabelSpec, load_labels, lookup_builtin
from medseg.export.prepare import EmptyMaskError
from medseg.export.reference import ReferenceSeries, load_reference
from medseg.export.rtstruct import parse_rtstruct, read_rtstruct, write_rtstruct
from medseg.export.seg import read_seg, write_seg

__all__ = [
    "AlgorithmType",
    "CodeSpec",
    "EmptyMaskError",
    "ExportFormat",
    "LabelSet",
    "LabelSpec",
    "MaskExporter",
    "OverlapError",
    "OverlapPolicy",
    "ReferenceSeries",
    "export_mask",
    "label_object_kind",
    "load_labels",
    "load_reference",
    "lookup_builtin",
    "parse_formats",
    "parse_rtstruct",
    "read_label_object",
    "read_rtstruct",
    "read_seg",
    "write_rtstruct",
    "write_seg",
]
