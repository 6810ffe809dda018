"""The case shown in OHIF: an embedded hippocampus MR written as DICOM, and a medseg SEG on it.

The SEG's mask is one axis-aligned rectangle on one slice, placed off-centre so that a flipped
row or column axis in any reader would move it somewhere else:

- voxel axis 0 (i) runs along the DICOM image rows, so it is the on-screen column;
- voxel axis 1 (j) runs down the DICOM columns, so it is the on-screen row;
- axis 2 (k) is the slice; ``InstanceNumber`` is ``k + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The MR case from the embedded samples (42 x 51 x 28 voxels of 1 mm).
CASE = "hippocampus_015"
#: The slice that holds the mask, and the mask's half-open voxel ranges on it.
SLICE = 14
I_RANGE = (6, 20)  # columns on screen: the left third of 42
J_RANGE = (10, 24)  # rows on screen: the upper half of 51


@dataclass(frozen=True)
class SegCase:
    """What was written, with enough geometry to predict where the overlay must be drawn."""

    series_dir: Path
    seg_path: Path
    files: list[Path]
    study_uid: str
    series_uid: str
    seg_series_uid: str
    rows: int  # DICOM Rows (image height in pixels)
    cols: int  # DICOM Columns (image width in pixels)
    n_slices: int
    voxels: int  # labelled voxels in the SEG
    slice_index: int
    col_range: tuple[int, int]  # half-open, image pixels
    row_range: tuple[int, int]


def build_case(folder: Path) -> SegCase:
    """Write the MR series and its SEG under ``folder`` (``mr/`` and ``seg.dcm``)."""
    import pydicom

    from medseg.data import sample_path
    from medseg.export import export_mask
    from medseg.io import read_volume
    from medseg.io.dicom.write import write_dicom_series
    from medseg.volume import Volume

    image = read_volume(sample_path("hippocampus") / "imagesTs" / f"{CASE}.nii.gz")
    series_dir = folder / "mr"
    files = write_dicom_series(
        image,
        series_dir,
        modality="MR",
        series_description="medseg hippocampus MR",
        patient={"PatientName": "MEDSEG^OHIF", "PatientID": "MEDSEG-OHIF"},
    )
    mask = np.zeros(image.array.shape, dtype=np.uint8)
    mask[I_RANGE[0] : I_RANGE[1], J_RANGE[0] : J_RANGE[1], SLICE] = 1
    seg_path = folder / "seg.dcm"
    export_mask(Volume(mask, image.affine), series_dir, "dicom-seg", {"1": "target"}, seg_path)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    return SegCase(
        series_dir=series_dir,
        seg_path=seg_path,
        files=list(files),
        study_uid=str(first.StudyInstanceUID),
        series_uid=str(first.SeriesInstanceUID),
        seg_series_uid=str(seg.SeriesInstanceUID),
        rows=int(first.Rows),
        cols=int(first.Columns),
        n_slices=len(files),
        voxels=int(mask.sum()),
        slice_index=SLICE,
        col_range=I_RANGE,
        row_range=J_RANGE,
    )
