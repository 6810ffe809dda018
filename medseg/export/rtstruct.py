"""RT Structure Set (RTSTRUCT) export and import.

Export: one ROI per class present, numbered by its label value; per slice one
CLOSED_PLANAR contour per boundary (outer boundaries and holes alike, filled with
the even-odd rule, see :mod:`medseg.export.contours`), in LPS patient coordinates
computed from that slice's own ImagePositionPatient, each contour referencing its
image. ROI names and display colours come from the labels; the algorithm is
recorded in the ROI Derivation Algorithm Identification Sequence.

Import: the CLOSED_PLANAR contours of each ROI are rasterised onto the reference
grid (pixel centres, even-odd rule); POINT and OPEN contours (markers, isocentres)
enclose nothing and are skipped with a note, as are contours that lie on no slice
of the reference series.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import GeometryMismatchError, MedsegError
from medseg.export.contours import fill_contours, slice_contours
from medseg.export.dicom_common import (
    RTSTRUCT_SOP_CLASS,
    AlgorithmType,
    OverlapPolicy,
    combine_structures,
    copy_patient_study,
    derived_series_number,
    medseg_version,
    now,
    read_dicom_object,
    require_kind,
)
from medseg.export.labels import LabelSet, LabelSpec, load_labels
from medseg.export.prepare import prepare_mask
from medseg.export.reference import ReferenceSeries, frames_from_array, load_reference
from medseg.io.atomic import atomic_output
from medseg.volume import Volume

log = logging.getLogger(__name__)

#: The Study Component Management SOP Class, which RT Referenced Study items name by convention.
_STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"


def _code_item(code: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


_CONTOUR_DATA = 0x30060050


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
    return RawDataElement(Tag(_CONTOUR_DATA), "DS", len(raw), raw, 0, False, True)


def _contour_points(item: Any) -> np.ndarray:
    """Contour Data of a contour item as floats (parsed directly when still encoded)."""
    if _CONTOUR_DATA not in item:
        return np.zeros(0)
    element = item.get_item(_CONTOUR_DATA)
    value = element.value
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="replace").strip("\x00 ")
        return np.array([float(v) for v in text.split("\\") if v.strip()], dtype=np.float64)
    if value is None:
        return np.zeros(0)
    values = value if isinstance(value, (list, tuple)) or hasattr(value, "__len__") else [value]
    return np.asarray([float(v) for v in values], dtype=np.float64)


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
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourNumber = len(items) + 1
            item[_CONTOUR_DATA] = _contour_data_element(points.ravel())
            items.append(item)
    return items


def write_rtstruct(
    mask: Volume | str | Path,
    reference_dir: str | Path | ReferenceSeries,
    labels: LabelSet | str | Path | dict | list | None,
    output: str | Path,
    algorithm_name: str = "medseg",
    model_name: str | None = None,
    algorithm_type: AlgorithmType | str = AlgorithmType.AUTOMATIC,
    series: str | None = None,
    series_description: str | None = None,
    structure_set_label: str = "MEDSEG",
) -> Path:
    """Write ``mask`` as an RT Structure Set on the source series, atomically.

    Args:
        mask: Label map (Volume or image path) on the reference grid, or on any axis
            permutation/flip of it.
        reference_dir: Folder of the source DICOM series (or a loaded reference).
        labels: Labels file/dict naming each class (None: generic names).
        output: The ``.dcm`` file to write.
        algorithm_name: Algorithm name recorded for each ROI.
        model_name: Model recorded as an algorithm parameter and as the device model.
        algorithm_type: ``automatic`` (default), ``semiautomatic`` or ``manual``.
        series: Which series of ``reference_dir`` (when it holds several).
        series_description: SeriesDescription of the RTSTRUCT.
        structure_set_label: StructureSetLabel (at most 16 characters).

    Returns:
        The written path.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    algorithm_type = AlgorithmType(algorithm_type)
    prepared = prepare_mask(mask, reference_dir, labels, series=series)
    ref = prepared.reference
    src = ref.datasets[0]
    frames = frames_from_array(prepared.array)
    date, time = now()
    what = model_name or algorithm_name

    ds = Dataset()
    copy_patient_study(src, ds)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = derived_series_number(ref.meta)
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = (series_description or f"RTSTRUCT {what}")[:64]
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
        roi_items.append(_roi_item(label, ref, algorithm_type, algorithm_name, model_name))
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
    algorithm_type: AlgorithmType,
    algorithm_name: str,
    model_name: str | None,
) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    item = Dataset()
    item.ROINumber = label.index
    item.ReferencedFrameOfReferenceUID = ref.frame_of_reference_uid
    item.ROIName = label.name
    item.ROIDescription = (label.description or label.type.meaning)[:64]
    item.ROIGenerationAlgorithm = algorithm_type.value.upper()
    if algorithm_type is not AlgorithmType.MANUAL:
        algorithm = Dataset()
        algorithm.AlgorithmFamilyCodeSequence = [_code_item(codes.cid7162.ArtificialIntelligence)]
        algorithm.AlgorithmName = algorithm_name[:64]
        algorithm.AlgorithmVersion = medseg_version()
        algorithm.AlgorithmSource = "medseg"
        if model_name:
            algorithm.AlgorithmParameters = f"model={model_name}"[:64]
        item.ROIDerivationAlgorithmIdentificationSequence = [algorithm]
        item.ROIGenerationDescription = f"{algorithm_name} (medseg {medseg_version()})"[:64]
    return item


# -- import -------------------------------------------------------------------------------------


@dataclass
class RoiContours:
    """One ROI of an RTSTRUCT: its number, name, colour and contours (LPS mm)."""

    number: int
    name: str
    color: tuple[int, int, int] | None
    frame_of_reference_uid: str | None
    contours: list[np.ndarray] = field(default_factory=list)  # CLOSED_PLANAR, (n, 3) each
    other_contours: dict[str, int] = field(default_factory=dict)  # other geometric types: count
    interpreted_type: str | None = None


def parse_rtstruct(path_or_dataset: str | Path | Any) -> list[RoiContours]:
    """The ROIs of an RTSTRUCT with their contours (no reference images needed).

    Raises:
        UnsupportedFormatError: not an RTSTRUCT. CorruptFileError: unreadable.
    """
    if isinstance(path_or_dataset, (str, Path)):
        ds = read_dicom_object(path_or_dataset)
        require_kind(ds, "RTSTRUCT", path_or_dataset)
    else:
        ds = path_or_dataset
    rois: dict[int, RoiContours] = {}
    for item in getattr(ds, "StructureSetROISequence", []):
        number = int(item.ROINumber)
        rois[number] = RoiContours(
            number,
            str(getattr(item, "ROIName", "") or f"ROI {number}"),
            None,
            str(getattr(item, "ReferencedFrameOfReferenceUID", "") or "") or None,
        )
    for item in getattr(ds, "ROIContourSequence", []):
        number = int(item.ReferencedROINumber)
        roi = rois.setdefault(number, RoiContours(number, f"ROI {number}", None, None))
        color = getattr(item, "ROIDisplayColor", None)
        if color is not None and len(color) == 3:
            roi.color = tuple(int(c) for c in color)
        for contour in getattr(item, "ContourSequence", []):
            kind = str(getattr(contour, "ContourGeometricType", "") or "")
            data = _contour_points(contour)
            if kind == "CLOSED_PLANAR" and data.size >= 9 and data.size % 3 == 0:
                roi.contours.append(data.reshape(-1, 3))
            else:
                roi.other_contours[kind or "unknown"] = roi.other_contours.get(kind or "unknown", 0) + 1
    for item in getattr(ds, "RTROIObservationsSequence", []):
        number = int(getattr(item, "ReferencedROINumber", -1))
        if number in rois:
            rois[number].interpreted_type = str(getattr(item, "RTROIInterpretedType", "") or "") or None
    return [rois[n] for n in sorted(rois)]


def _frame_of_reference(ds: Any) -> str | None:
    for item in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        uid = str(getattr(item, "FrameOfReferenceUID", "") or "")
        if uid:
            return uid
    return str(getattr(ds, "FrameOfReferenceUID", "") or "") or None


def rasterise_roi(roi: RoiContours, ref: ReferenceSeries) -> tuple[np.ndarray, int]:
    """Binary ``[k, row, column]`` grid frames of one ROI, and how many of its closed
    contours lie on no slice of the grid (skipped)."""
    pixel_to_lps = ref.pixel_to_lps()
    to_pixel = np.linalg.inv(pixel_to_lps)
    step = float(np.linalg.norm(pixel_to_lps[:3, 2]))
    frames = np.zeros((ref.shape[2], ref.rows, ref.columns), dtype=bool)
    per_slice: dict[int, list[np.ndarray]] = {}
    off_grid = 0
    for points in roi.contours:
        idx = (to_pixel @ np.c_[points, np.ones(len(points))].T).T[:, :3]  # (column, row, k)
        k = np.rint(idx[:, 2])
        if np.ptp(k) > 0 or np.max(np.abs(idx[:, 2] - k)) * step > max(0.01, 0.1 * step):
            off_grid += 1  # not planar on one slice of the grid
            continue
        kk = int(k[0])
        if not 0 <= kk < ref.shape[2]:
            off_grid += 1
            continue
        per_slice.setdefault(kk, []).append(idx[:, [1, 0]])  # (row, column)
    for kk, contours in per_slice.items():
        frames[kk] = fill_contours(contours, (ref.rows, ref.columns))
    return frames, off_grid


def read_rtstruct(
    path: str | Path,
    reference_dir: str | Path | ReferenceSeries,
    labels: LabelSet | str | Path | dict | list | None = None,
    overlap: OverlapPolicy | str = OverlapPolicy.ERROR,
    series: str | None = None,
) -> Volume:
    """Rasterise an RTSTRUCT onto the grid of its source series, as a label map.

    Label values: with ``labels``, ROIs are matched by name and ROIs not named there
    are left out (and listed in the volume's warnings); otherwise each ROI gets its
    ROI Number. ROIs with no closed contour on the reference grid are left out.

    Raises:
        GeometryMismatchError: the RTSTRUCT is in another frame of reference.
        OverlapError: overlapping ROIs with ``overlap="error"``.
    """
    source = str(path)
    ds = read_dicom_object(path)
    require_kind(ds, "RTSTRUCT", path)
    ref = (
        reference_dir
        if isinstance(reference_dir, ReferenceSeries)
        else load_reference(reference_dir, series, allow_irregular=True)
    )
    label_set = load_labels(labels) if labels is not None else None
    rt_for = _frame_of_reference(ds)
    if rt_for and ref.frame_of_reference_uid and rt_for != ref.frame_of_reference_uid:
        raise GeometryMismatchError(
            f"{source} is in frame of reference {rt_for} but reference series {ref.series_id} is in "
            f"{ref.frame_of_reference_uid}",
            hint="give the image series the structure set was drawn on",
        )
    notes: list[str] = list(ref.meta.warnings)
    masks, values, names = [], [], []
    not_named, empty, open_kinds = [], [], {}
    off_grid = 0
    for roi in parse_rtstruct(ds):
        for kind in roi.other_contours:
            open_kinds.setdefault(kind, []).append(roi.name)
        if label_set is not None:
            match = label_set.find(roi.name)
            if match is None:
                not_named.append(roi.name)
                continue
            value = match.index
        else:
            value = roi.number
        frames, skipped = rasterise_roi(roi, ref)
        off_grid += skipped
        if not frames.any():
            empty.append(roi.name)
            continue
        masks.append(frames)
        values.append(value)
        names.append(roi.name)
    if not_named:
        notes.append(f"ROIs not in the labels file, left out: {', '.join(not_named)}")
    if off_grid:
        notes.append(f"{off_grid} closed contour(s) lie on no slice of the reference series, skipped")
    for kind, rois in open_kinds.items():
        notes.append(f"{kind} contours enclose no area, skipped (ROIs {', '.join(rois)})")
    if empty:
        notes.append(f"ROIs with no closed contour on the reference series, left out: {', '.join(empty)}")
    if not masks:
        raise MedsegError(
            f"{source}: no ROI has a closed contour on reference series {ref.series_id}",
            hint="check that --reference is the series the structures were drawn on",
        )
    if min(values) < 1 or max(values) > 65535:
        raise MedsegError(
            f"{source}: ROI numbers {values} do not fit label values 1..65535", hint="give --labels"
        )
    if len(set(values)) != len(values):
        raise MedsegError(f"{source}: several ROIs map to the same label value", hint="check the labels file")
    for note in notes:
        log.warning("%s: %s", source, note)
    combined, split = combine_structures(masks, values, names, overlap, source)
    from medseg.export.reference import array_from_frames

    array = array_from_frames(combined)
    meta = replace(
        ref.meta,
        modality="RTSTRUCT",
        source=source,
        source_format="dicom-rtstruct",
        series_uid=str(getattr(ds, "SeriesInstanceUID", "")) or None,
        series_description=str(getattr(ds, "SeriesDescription", "")) or None,
        warnings=notes,
        extra={
            "structures": [
                {"channel" if split else "value": (c if split else v), "name": nm}
                for c, (v, nm) in enumerate(zip(values, names))
            ]
        },
    )
    return Volume(array, ref.affine.copy(), meta)
