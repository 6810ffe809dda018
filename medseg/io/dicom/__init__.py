"""DICOM series reading (scanning, grouping, stacking with exact geometry) and writing."""

from medseg.io.dicom.assemble import (
    SeriesPlan,
    analyse_stack,
    plan_dicom_series,
    read_dicom_series,
)
from medseg.io.dicom.scan import DicomScan, DicomSeries, scan_dicom, select_series
from medseg.io.dicom.write import write_dicom_series

__all__ = [
    "DicomScan",
    "DicomSeries",
    "SeriesPlan",
    "analyse_stack",
    "plan_dicom_series",
    "read_dicom_series",
    "scan_dicom",
    "select_series",
    "write_dicom_series",
]
