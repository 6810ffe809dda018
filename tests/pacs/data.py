"""Two real studies for the PACS tests, as DICOM files a PACS accepts.

- the embedded TotalSegmentator CT (JPEG 2000 lossless, 20 slices); its anonymised copy has
  blank study/series/instance UIDs and PatientID, which a PACS refuses, so they are filled in;
- the first embedded MSD hippocampus MR test scan (NIfTI), written as a DICOM MR series.
"""

from __future__ import annotations

from pathlib import Path

from medseg.data import sample_path

CT_PATIENT = "PACS-CT-1"
MR_PATIENT = "PACS-MR-1"
CT_DATE = "20221208"
MR_DATE = "20210615"


def ct_series(folder: Path) -> list[Path]:
    """The TotalSegmentator CT with UIDs filled in (pixel data untouched, still JPEG 2000)."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    out = []
    for src in sorted((sample_path("totalsegmentator_ct") / "dicom").iterdir()):
        ds = pydicom.dcmread(src)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName = CT_PATIENT, "PACS^CT"
        ds.StudyDate = CT_DATE
        ds.StudyID, ds.AccessionNumber = "1", "ACC-CT-1"
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def mr_series(folder: Path) -> list[Path]:
    """The first hippocampus test scan written as an MR series (Explicit VR Little Endian)."""
    from medseg.io import read_volume
    from medseg.io.dicom import write_dicom_series

    image = sorted((sample_path("hippocampus") / "imagesTs").glob("*.nii.gz"))[0]
    files = write_dicom_series(
        read_volume(image),
        folder,
        modality="MR",
        series_description="hippocampus MR",
        patient={"PatientName": "PACS^MR", "PatientID": MR_PATIENT},
    )
    import pydicom

    for f in files:  # a study date inside the test's date range
        ds = pydicom.dcmread(f)
        ds.StudyDate = MR_DATE
        ds.save_as(f, enforce_file_format=True)
    return files
