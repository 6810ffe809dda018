"""Write a :class:`~medseg.volume.Volume` as a DICOM image series (one file per slice).

Clinical viewers and DICOM SEG/RTSTRUCT need a DICOM image series to attach a mask to. When a
dataset exists only as NIfTI (the Medical Segmentation Decathlon, say), this writes a derived
series with the volume's exact geometry and fresh UIDs, so the scan and its exported
segmentation can be loaded together. Reading the series back with
:func:`medseg.io.read_volume` gives the same voxels on the same world grid.

Voxel axis 0 runs along the image rows (DICOM columns), axis 1 down the columns (DICOM rows),
axis 2 through the slices. Intensities are stored as 16-bit integers: integer-valued data
unchanged, anything else through RescaleSlope/RescaleIntercept with 65535 levels over its range.
The patient and study attributes are placeholders unless given; nothing is copied from any
other file.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg import geometry
from medseg.errors import MedsegError
from medseg.io.atomic import atomic_output
from medseg.volume import Volume

log = logging.getLogger(__name__)

_SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def _stored_values(array: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """(integer pixels, slope, intercept, signed) that represent ``array`` in 16 bits."""
    finite = np.isfinite(array)
    if not finite.all():
        raise MedsegError("the volume holds NaN or infinite values", hint="fill them before writing DICOM")
    lo, hi = float(array.min()), float(array.max())
    integral = np.issubdtype(array.dtype, np.integer) or bool(np.all(array == np.round(array)))
    if integral and lo >= -32768 and hi <= 32767:
        return array.astype(np.int16), 1.0, 0.0, True
    if integral and lo >= 0 and hi <= 65535:
        return array.astype(np.uint16), 1.0, 0.0, False
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.round((array.astype(np.float64) - lo) / slope)
    return np.clip(stored, 0, 65535).astype(np.uint16), slope, lo, False


def _geometry(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """LPS affine, row direction, column direction and spacing of the volume."""
    if geometry.is_sheared(volume.affine):
        raise MedsegError(
            "the volume's axes are not perpendicular; a DICOM image series cannot hold a sheared grid",
            hint="resample it onto a regular grid first",
        )
    lps = geometry.LPS_TO_RAS @ volume.affine  # the same matrix converts both ways
    sx, sy, sz = geometry.spacing(volume.affine)
    return lps, lps[:3, 0] / sx, lps[:3, 1] / sy, (sx, sy, sz)


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    modality: str = "MR",
    series_description: str = "medseg derived series",
    patient: Mapping[str, str] | None = None,
    study_uid: str | None = None,
    series_number: int = 1,
    overwrite: bool = False,
) -> list[Path]:
    """Write a 3D volume as a DICOM CT or MR image series, one file per slice.

    Args:
        volume: A 3D scalar volume (``Volume.array`` of shape (X, Y, Z)).
        folder: Folder to create; it must not exist (or be empty) unless ``overwrite``.
        modality: ``"MR"`` (MR Image Storage) or ``"CT"`` (CT Image Storage).
        series_description: SeriesDescription of the new series.
        patient: PatientName, PatientID and optionally PatientSex/PatientBirthDate; default a
            placeholder ``ANONYMOUS^MEDSEG`` / ``MEDSEG0001``.
        study_uid: Put the series into this study (default: a new study).
        series_number: SeriesNumber of the new series.
        overwrite: Replace files in an existing non-empty folder.

    Returns:
        The written files in slice order.

    Raises:
        ValueError: a bad modality or a volume that is not 3D.
        MedsegError: the folder is not empty, or the volume has NaN/inf values or a sheared grid.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    modality = modality.upper()
    if modality not in _SOP_CLASS:
        raise ValueError(f"modality must be 'MR' or 'CT', got {modality!r}")
    if volume.array.ndim != 3:
        raise ValueError(f"write_dicom_series needs a 3D volume, got shape {volume.array.shape}")
    out = Path(folder)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise MedsegError(f"{out} is not empty", hint="choose a new folder or pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    lps, row_dir, col_dir, (sx, sy, sz) = _geometry(volume)
    pixels, slope, intercept, signed = _stored_values(np.asarray(volume.array))
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    people = {"PatientName": "ANONYMOUS^MEDSEG", "PatientID": "MEDSEG0001", **(patient or {})}
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    files = []
    for k in range(pixels.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        _fill_common(ds, people, modality, date, time)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = series_number, k + 1, series_description
        position = lps @ np.array([0.0, 0.0, k, 1.0])
        ds.ImagePositionPatient = [_ds(v) for v in position[:3]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]  # (between rows, between columns)
        ds.SliceThickness = _ds(sz)
        ds.SliceLocation = _ds(float(np.dot(position[:3], np.cross(row_dir, col_dir))))
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        if modality == "CT" or slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
            if modality == "CT":
                ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
        path = out / f"IM{k + 1:05d}.dcm"
        with atomic_output(path) as tmp:
            ds.save_as(str(tmp), enforce_file_format=True)
        files.append(path)
    log.info("wrote %d %s slices to %s", len(files), modality, out)
    return files


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{float(value):.10g}"
    return text if len(text) <= 16 else f"{float(value):.8e}"


def _fill_common(ds: Any, people: Mapping[str, str], modality: str, date: str, time: str) -> None:
    """Patient, study, equipment and image attributes that every slice shares."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    for key in ("PatientName", "PatientID"):
        setattr(ds, key, people[key])
    ds.PatientBirthDate = people.get("PatientBirthDate", "")
    ds.PatientSex = people.get("PatientSex", "")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
    ds.Modality = modality
    ds.Manufacturer = "medseg"
    ds.PositionReferenceIndicator = ""
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.Laterality = ds.PatientPosition = ""
    ds.BurnedInAnnotation = "NO"
    if modality == "MR":
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
        ds.MRAcquisitionType = "3D"
        ds.EchoTime, ds.EchoTrainLength, ds.RepetitionTime = "", "", ""
    else:
        ds.KVP = ""
        ds.AcquisitionNumber = 1
