"""Clinical export and import: DICOM SEG and RTSTRUCT that reference the source series.

* :data:`EXPORTS` (:mod:`medseg.export.registry`): the export formats (nifti, dicom-seg,
  rtstruct), each with its suffix, writer and capabilities.
* :func:`export_mask` / :class:`MaskExporter`: a label map on a DICOM series' grid ->
  any registered format, e.g. DICOM SEG (highdicom) or RT Structure Set, referencing the
  exact source instances; :class:`ExportOptions` says what the objects record.
* :func:`read_label_object`: a SEG or RTSTRUCT -> label map on the source grid, and
  :func:`load_labels`: labels (names, colours, SNOMED CT codes); both are core
  (:mod:`medseg.io.dicom`, :mod:`medseg.labels`), re-exported here.

Names are imported on first use, so that ``medseg.export.registry`` (which the CLI reads
for its help) stays light. See ``docs/export.md``.
"""

from __future__ import annotations

from typing import Any

#: Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    "AlgorithmType": "medseg.export.dicom_common",
    "OverlapError": "medseg.io.dicom.objects",
    "OverlapPolicy": "medseg.io.dicom.objects",
    "MaskExporter": "medseg.export.exporter",
    "export_mask": "medseg.export.exporter",
    "label_object_kind": "medseg.io.dicom.label_objects",
    "read_label_object": "medseg.io.dicom.label_objects",
    "CodeSpec": "medseg.labels",
    "LabelSet": "medseg.labels",
    "LabelSpec": "medseg.labels",
    "load_labels": "medseg.labels",
    "lookup_builtin": "medseg.labels",
    "ExportOptions": "medseg.export.options",
    "EmptyMaskError": "medseg.export.prepare",
    "ReferenceSeries": "medseg.io.dicom.reference",
    "load_reference": "medseg.io.dicom.reference",
    "EXPORTS": "medseg.export.registry",
    "ExportFormat": "medseg.export.registry",
    "get_export": "medseg.export.registry",
    "parse_formats": "medseg.export.registry",
    "parse_rtstruct": "medseg.io.dicom.rtstruct_read",
    "read_rtstruct": "medseg.io.dicom.rtstruct_read",
    "write_rtstruct": "medseg.export.rtstruct",
    "read_seg": "medseg.io.dicom.seg_read",
    "write_seg": "medseg.export.seg",
}

__all__ = [
    "EXPORTS",
    "AlgorithmType",
    "CodeSpec",
    "EmptyMaskError",
    "ExportFormat",
    "ExportOptions",
    "LabelSet",
    "LabelSpec",
    "MaskExporter",
    "OverlapError",
    "OverlapPolicy",
    "ReferenceSeries",
    "export_mask",
    "get_export",
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


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'medseg.export' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
