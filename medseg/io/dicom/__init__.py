"""DICOM series reading: scanning, grouping, stacking with exact geometry."""

from medseg.io.dicom.assemble import (
    SeriesPlan,
    analyse_stack,
    plan_dicom_series,
    read_dicom_series,
)
from medseg.io.dicom.scan import DicomScan, DicomSeries, scan_dicom, select_series

__all__ = [
    "DicomScan",
    "DicomSeries",
    "SeriesPlan",
    "analyse_stack",
    "plan_dicom_series",
    "read_dicom_series",
    "scan_dicom",
    "select_series",
]
