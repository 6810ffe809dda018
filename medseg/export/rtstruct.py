"""RT Structure Set (RTSTRUCT) export (PS3.3 A.19; C.8.8.5 Structure Set, C.8.8.6 ROI Contour).

One ROI per class present, numbered by its label value; per slice one CLOSED_PLANAR
contour per boundary (outer boundaries and holes alike, see
:mod:`medseg.export.contours`), in LPS patient coordinates computed from that slice's
own ImagePositionPatient, each contour referencing its image. ROI names and display
colours come from the labels; the algorithm is recorded in the ROI Derivation
Algorithm Identification Sequence.

Import (:func:`read_rtstruct`, :func:`parse_rtstruct`) lives in core,
:mod:`medseg.io.dicom.rtstruct_read`, and is re-exported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.export.contours import slice_contours
from medseg.export.dicom_common import (
    RTSTRUCT_SOP_CLASS,
    AlgorithmType,
    copy_patient_study,
    derived_series_number,
    medseg_version,
    now,
)
from medseg.export.labels import LabelSet, LabelSpec
from medseg.export.options import ExportOptions
from medseg.export.prepare import prepare_mask
from medseg.export.reference import ReferenceSeries, frames_from_array
from medseg.io.atomic import atomic_output
from medseg.io.dicom.rtstruct_read import (
    CLOSED_PLANAR,
    CONTOUR_DATA_TAG,
    RoiContours,
    parse_rtstruct,
    rasterise_roi,
    read_rtstruct,
)
from medseg.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["RoiContours", "parse_rtstruct", "rasterise_roi", "read_rtstruct", "write_rtstruct"]

#: The Study Component Management SOP Class, which RT Referenced Study items name by convention.
_STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"


def _code_item(code: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _contour_data_element(values: np.ndarray) -> Any:
    """Contour Data as an already-encoded DS element: decimal strings with 0.1 micrometre
    resolution (at most 16 characters each). Encoding it once here avoids pydicom
    validating every one of the many thousand values."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    text = "\\".join(f"{v:.4f}" for v in values)
    if len(text) % 2:
        text += " "
    raw = text.encode("ascii")
    return RawDataElement(Tag(CONTOUR_DATA_TAG), "DS", len(raw), raw, 0, False, True)


def _contour_items(
    label_map: np.ndarray, value: int, ref: ReferenceSeries, image_refs: list[Any]
) -> list[Any]:
    """ContourSequence items of one label (``label_map`` in DICOM frame order ``[k, r, c]``)."""
    from pydicom.dataset import Dataset

    ds0 = ref.datasets[0]
    iop = np.array([float(v) for v in ds0.ImageOrientationPatient])
    row_dir, col_dir = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    row_spacing, col_spacing = (float(v) for v in ds0.PixelSpacing)
    items = []
    slices = np.flatnonzero((label_map == value).any(axis=(1, 2)))
    for k in slices:
        origin = ref.slice_position(int(k))
        for contour in slice_contours(label_map[k] == value):
            r, c = contour[:, 0:1], contour[:, 1:2]
            points = origin + c * col_spacing * row_dir + r * row_spacing * col_dir
            item = Dataset()
            item.ContourImageSequence = [image_refs[int(k)]]
            item.ContourGeometricType = CLOSED_PLANAR
            item.NumberOfContourPoints = len(points)
            item.ContourNumber = len(items) + 1
            item[CONTOUR_DATA_TAG] = _contour_data_element(points.ravel())
            items.append(item)
    return items


def write_rtstruct(
    mask: Volume | str | Path,
    reference_dir: str | Path | ReferenceSeries,
    labels: LabelSet | str | Path | dict | list | None,
    output: str | Path,
    options: ExportOptions | None = None,
    structure_set_label: str = "MEDSEG",
) -> Path:
    """Write ``mask`` as an RT Structure Set on the source series, atomically.

    Args:
        mask: Label map (Volume or image path) on the reference grid, or on any axis
            permutation/flip of it.
        reference_dir: Folder of the source DICOM series (or a loaded reference).
        labels: Labels file/dict naming each class (None: generic names).
        output: The ``.dcm`` file to write.
        options: Algorithm and model recorded for each ROI, ``series`` of
            ``reference_dir``, SeriesDescription; ``fractional`` does not apply (contours
            hold no probabilities; :func:`medseg.export.export_mask` refuses it).
        structure_set_label: StructureSetLabel (at most 16 characters).

    Returns:
        The written path.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    options = options or ExportOptions()
    prepared = prepare_mask(mask, reference_dir, labels, series=options.series)
    ref = prepared.reference
    src = ref.datasets[0]
    frames = frames_from_array(prepared.array)
    date, time = now()
    what = options.recorded_name

    ds = Dataset()
    copy_patient_study(src, ds)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = derived_series_number(ref.meta)
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = (options.series_description or f"RTSTRUCT {what}")[:64]
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = ref.frame_of_reference_uid
    ds.PositionReferenceIndicator = getattr(src, "PositionReferenceIndicator", None) or ""
    ds.Manufacturer = "medseg"
    ds.ManufacturerModelName = what[:64]
    ds.SoftwareVersions = f"medseg {medseg_version()}"
    ds.InstanceNumber = 1
    ds.StructureSetLabel = structure_set_label[:16]
    ds.StructureSetName = what[:64]
    ds.StructureSetDate, ds.StructureSetTime = date, time

    image_refs = []
    for k_ds in ref.datasets:
        item = Dataset()
        item.ReferencedSOPClassUID = k_ds.SOPClassUID
        item.ReferencedSOPInstanceUID = k_ds.SOPInstanceUID
        image_refs.append(item)
    series_item = Dataset()
    series_item.SeriesInstanceUID = ref.series_uid
    series_item.ContourImageSequence = image_refs
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = _STUDY_REFERENCE_CLASS
    study_item.ReferencedSOPInstanceUID = src.StudyInstanceUID
    study_item.RTReferencedSeriesSequence = [series_item]
    for_item = Dataset()
    for_item.FrameOfReferenceUID = ref.frame_of_reference_uid
    for_item.RTReferencedStudySequence = [study_item]
    ds.ReferencedFrameOfReferenceSequence = [for_item]

    roi_items, contour_items, observation_items = [], [], []
    for label in prepared.labels:
        roi_items.append(_roi_item(label, ref, options))
        contours = Dataset()
        contours.ReferencedROINumber = label.index
        contours.ROIDisplayColor = list(label.color)
        contours.ContourSequence = _contour_items(frames, label.index, ref, image_refs)
        contour_items.append(contours)
        observation = Dataset()
        observation.ObservationNumber = label.index
        observation.ReferencedROINumber = label.index
        observation.RTROIInterpretedType = label.rt_type or ""
        observation.ROIInterpreter = ""
        observation_items.append(observation)
    ds.StructureSetROISequence = roi_items
    ds.ROIContourSequence = contour_items
    ds.RTROIObservationsSequence = observation_items
    ds.ApprovalStatus = "UNAPPROVED"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = Path(output)
    with atomic_output(out) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    n_contours = sum(len(c.ContourSequence) for c in contour_items)
    log.info("wrote RTSTRUCT %s (%d ROIs, %d contours)", out, len(roi_items), n_contours)
    return out


def _roi_item(
    label: LabelSpec,
    ref: ReferenceSeries,
    options: ExportOptions,
) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    item = Dataset()
    item.ROINumber = label.index
    item.ReferencedFrameOfReferenceUID = ref.frame_of_reference_uid
    item.ROIName = label.name
    item.ROIDescription = (label.description or label.type.meaning)[:64]
    item.ROIGenerationAlgorithm = options.algorithm_type.value.upper()
    if options.algorithm_type is not AlgorithmType.MANUAL:
        algorithm = Dataset()
        algorithm.AlgorithmFamilyCodeSequence = [_code_item(codes.cid7162.ArtificialIntelligence)]
        algorithm.AlgorithmName = options.algorithm_name[:64]
        algorithm.AlgorithmVersion = medseg_version()
        algorithm.AlgorithmSource = "medseg"
        if options.model_name:
            algorithm.AlgorithmParameters = f"model={options.model_name}"[:64]
        item.ROIDerivationAlgorithmIdentificationSequence = [algorithm]
        item.ROIGenerationDescription = f"{options.algorithm_name} (medseg {medseg_version()})"[:64]
    return item
