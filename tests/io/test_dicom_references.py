"""Real DICOM against real references: dcm2niix conversions and a TotalSegmentator mask.

These tests need ../shared/datasets and skip with the reason when it is absent.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medseg import geometry
from medseg.errors import SeriesGeometryError
from medseg.io import read_volume, write_volume
from tests.conftest import shared_path

pytestmark = pytest.mark.shared


def _assert_same_world_mapping(volume, ref_img, tol_mm=1e-3):
    """Same shape and every voxel within tol_mm of the reference's, same voxel data."""
    ref = np.asanyarray(ref_img.dataobj)
    assert volume.shape == ref.shape
    assert geometry.same_grid(volume.affine, volume.shape, ref_img.affine, ref.shape, tol_mm)
    np.testing.assert_array_equal(volume.array, ref)


def test_ge_4d_fmri_matches_dcm2niix(shared_datasets, tmp_path):
    folder = shared_path(shared_datasets, "dcm_qa_nih", "In", "20180918GE", "mr_0004")
    ref = nib.load(shared_path(shared_datasets, "dcm_qa_nih", "Ref", "DCM2NIIX_regression_test_4.nii"))
    v = read_volume(folder)
    assert v.shape == (64, 64, 15, 10)  # not 150 stacked slices
    _assert_same_world_mapping(v, ref)
    # and through the NIfTI writer
    write_volume(v, tmp_path / "fmri.nii.gz")
    back = nib.load(tmp_path / "fmri.nii.gz")
    assert back.shape == ref.shape
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), np.asanyarray(ref.dataobj))
    assert back.header.get_zooms()[3] == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("series", "ref"),
    [
        ("mr_0003", "EPI_PE=AP_3"),
        ("mr_0004", "EPI_PE=PA_4"),
        ("mr_0005", "EPI_PE=RL_5"),
        ("mr_0006", "EPI_PE=LR_6"),
    ],
)
def test_siemens_mosaic_unpacked_like_dcm2niix(shared_datasets, series, ref):
    folder = shared_path(shared_datasets, "dcm_qa_nih", "In", "20180918Si", series)
    ref_img = nib.load(shared_path(shared_datasets, "dcm_qa_nih", "Ref", f"{ref}.nii"))
    v = read_volume(folder)
    assert v.shape == (72, 72, 5, 2)
    _assert_same_world_mapping(v, ref_img)


def test_jpeg2000_ct_lands_on_the_totalsegmentator_grid(shared_datasets):
    ts = shared_path(shared_datasets, "totalsegmentator_examples")
    v = read_volume(shared_path(ts, "example_ct_dicom"))
    seg_img = nib.load(shared_path(ts, "example_seg_dicom.nii.gz"))
    seg = np.asanyarray(seg_img.dataobj)
    assert v.shape == seg.shape
    np.testing.assert_allclose(v.affine, seg_img.affine, atol=1e-3)
    assert v.meta.modality == "CT"
    assert v.spacing[2] == pytest.approx(2.0)  # from positions, not SliceThickness (3 mm)
    classes = {name: int(k) for k, name in json.loads((ts / "class_map_total_v2.json").read_text()).items()}
    for organ in ("liver", "spleen"):
        mean_hu = float(v.array[seg == classes[organ]].mean())
        assert 40 <= mean_hu <= 150, (organ, mean_hu)
    # air outside the body is air: proves rescale intercept was applied
    assert v.array.min() <= -1000


def test_tilted_uneven_ge_ct_refused_then_matches_tilt_corrected_reference(shared_datasets):
    folder = shared_path(shared_datasets, "dcm_qa_ct_ge_head", "In", "GE")
    with pytest.raises(SeriesGeometryError, match="gantry tilt") as err:
        read_volume(folder)
    assert "non-uniform slice spacing" in str(err.value)
    assert "--resample-uneven" in str(err.value)
    v = read_volume(folder, resample_uneven=True)
    ref_img = nib.load(
        shared_path(shared_datasets, "dcm_qa_ct_ge_head", "Ref_regenerated", "_2_Tilt_Eq_1.nii.gz")
    )
    ref = np.asanyarray(ref_img.dataobj).astype(np.float32)
    # sample our volume in world space at every reference voxel
    idx = np.indices(ref.shape).reshape(3, -1)
    idx = np.vstack([idx, np.ones((1, idx.shape[1]))])
    ours_idx = (geometry.voxel_to_voxel(ref_img.affine, v.affine) @ idx)[:3]
    sampled = ndimage.map_coordinates(v.array.astype(np.float32), ours_idx, order=1, cval=np.nan).reshape(
        ref.shape
    )
    head = (ref > -300) & np.isfinite(sampled)
    assert head.sum() > 1_000_000
    r = np.corrcoef(ref[head], sampled[head])[0, 1]
    assert r >= 0.95, r
