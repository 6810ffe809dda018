"""Enhanced (multi-frame) DICOM: one file, per-frame positions."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medseg.io import read_volume
from tests.fixtures.dicom_factory import LPS_TO_RAS, base_dataset


def _enhanced_ct(path, positions, iop, ps, values, slope=1.0, intercept=-1024.0, temporal=None):
    ds, meta = base_dataset("CT")
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    ds.SOPInstanceUID = sop
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 7
    n = len(positions)
    rows, cols = values[0].shape
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = list(iop)
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = list(ps)
    measures.SliceThickness = 1.0
    shared.PixelMeasuresSequence = Sequence([measures])
    transform = Dataset()
    transform.RescaleSlope = slope
    transform.RescaleIntercept = intercept
    transform.RescaleType = "HU"
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for f, p in enumerate(positions):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = list(p)
        item.PlanePositionSequence = Sequence([pos])
        content = Dataset()
        if temporal is not None:
            content.TemporalPositionIndex = temporal[f]
        item.FrameContentSequence = Sequence([content])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.stack(values).astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_enhanced_ct_frames_sorted_by_position(tmp_path):
    positions = [[0, 0, z] for z in (6.0, 0.0, 4.0, 2.0)]  # frames out of order
    values = [np.full((4, 3), 1024 + int(p[2]) * 10, np.uint16) for p in positions]
    values[0][0, 0] = 2000  # marks row 0, column 0 of the z=6 frame
    _enhanced_ct(tmp_path / "mf.dcm", positions, [1, 0, 0, 0, 1, 0], [0.5, 0.25], values)
    v = read_volume(tmp_path / "mf.dcm")
    assert v.shape == (3, 4, 4)
    assert v.spacing == pytest.approx((0.25, 0.5, 2.0))
    for k in range(4):
        assert v.array[1, 1, k] == 20 * k  # HU after intercept: z = 2k
    # the marked pixel: row 0, column 0 of the top slice -> medseg j = rows - 1
    assert v.array[0, 3, 3] == 2000 - 1024
    world = LPS_TO_RAS @ v.affine @ [0, 3, 3, 1]
    np.testing.assert_allclose(world[:3], [0, 0, 6.0], atol=1e-6)


def test_enhanced_mr_4d_by_temporal_index(tmp_path):
    base = [[0, 0, z] for z in (0.0, 3.0)]
    positions = base * 3
    temporal = [1, 1, 2, 2, 3, 3]
    values = [np.full((2, 2), 100 * t + k, np.uint16) for t in range(3) for k in range(2)]
    _enhanced_ct(
        tmp_path / "mf4d.dcm", positions, [1, 0, 0, 0, 1, 0], [1, 1], values, intercept=0.0, temporal=temporal
    )
    v = read_volume(tmp_path / "mf4d.dcm")
    assert v.shape == (2, 2, 2, 3)
    assert v.array[0, 0, 1, 2] == 201
