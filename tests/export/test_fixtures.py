"""Real SEG/RTSTRUCT fixtures (highdicom, dicompyler, pydicom, dcmqi) import correctly."""

from __future__ import annotations

import shutil
import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg.export import OverlapError, parse_rtstruct, read_label_object, read_rtstruct, read_seg
from medseg.export.preview import save_overlay_png
from medseg.io import read_volume
from tests.conftest import shared_path
from tests.export.helpers import dice, embed_exactly, keep_artifact

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def fixtures(shared_datasets):
    return shared_path(shared_datasets, "dicom_rtstruct_seg_fixtures")


def _expected_on_grid(seg_path, ct_dir, grid, **kwargs):
    """highdicom's frames per source instance, placed by each file's own position with pydicom."""
    seg = hd.seg.segread(seg_path)
    files = sorted(ct_dir.iterdir())
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    uids = [h.SOPInstanceUID for h in headers]
    frames = seg.get_pixels_by_source_instance(uids, assert_missing_frames_are_empty=True, **kwargs)
    lps_to_voxel = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid.affine)
    out = np.zeros((*grid.spatial_shape, frames.shape[-1]), dtype=frames.dtype)
    rows = int(headers[0].Rows)
    for h, frame in zip(headers, frames):
        k = lps_to_voxel @ np.r_[np.asarray(h.ImagePositionPatient, float), 1.0]
        # the file's top-left pixel is voxel (0, Rows-1, k) in medseg's (dcm2niix) order
        assert np.allclose(k[:2], [0, rows - 1], atol=1e-3) and abs(k[2] - round(k[2])) < 1e-3
        out[:, :, round(k[2])] = np.transpose(frame, (1, 0, 2))[:, ::-1]
    return out


def test_highdicom_segs_onto_their_ct_series(fixtures, tmp_path):
    ct_dir = fixtures / "pydicom_ct2_series_16x16"
    grid = read_volume(ct_dir, resample_uneven=True)  # 4 slices with a gap: medseg's regular grid
    binary = fixtures / "highdicom_seg_image_ct_binary.dcm"
    vol = read_seg(binary, ct_dir)
    assert vol.shape == grid.shape and np.allclose(vol.affine, grid.affine)
    expected = _expected_on_grid(binary, ct_dir, grid)[..., 0]
    assert np.array_equal(vol.array, expected)
    assert int(vol.array.sum()) == int(pydicom.dcmread(binary).pixel_array.sum())  # nothing lost
    assert vol.meta.warnings and "irregular series" in vol.meta.warnings[0]
    # the SEG's own geometry (no reference) lands on the same voxels
    own = read_label_object(binary)
    assert np.array_equal(embed_exactly(own.array, own.affine, grid.affine, grid.spatial_shape), vol.array)
    # fractional: highdicom's probabilities, thresholded at 0.5
    fractional = fixtures / "highdicom_seg_image_ct_true_fractional.dcm"
    probs = _expected_on_grid(fractional, ct_dir, grid)[..., 0]
    assert np.array_equal(read_seg(fractional, ct_dir).array, (probs > 0.5).astype(np.uint8))


def test_overlapping_highdicom_seg_policies(fixtures):
    ct_dir = fixtures / "pydicom_ct2_series_16x16"
    path = fixtures / "highdicom_seg_image_ct_binary_overlap.dcm"
    grid = read_volume(ct_dir, resample_uneven=True)
    stacked = _expected_on_grid(path, ct_dir, grid, segment_numbers=[1, 2])
    assert (stacked.sum(axis=-1) > 1).any()  # the fixture does overlap
    with pytest.raises(OverlapError, match="overlap"):
        read_seg(path, ct_dir)
    last = read_seg(path, ct_dir, overlap="last").array
    assert np.array_equal(last, np.where(stacked[..., 1] > 0, 2, np.where(stacked[..., 0] > 0, 1, 0)))
    split = read_seg(path, ct_dir, overlap="split")
    assert split.array.shape == (*grid.spatial_shape, 2) and np.array_equal(split.array, stacked)


def test_dcmqi_liver_seg_without_its_ct(fixtures):
    path = fixtures / "pydicom_data_liver_seg.dcm"
    vol = read_seg(path)  # no reference series exists: the SEG's own geometry
    ds = pydicom.dcmread(path)
    assert vol.shape == (512, 512, 3) and int(vol.array.sum()) == int(ds.pixel_array.sum())
    assert vol.meta.extra["structures"][0]["name"] == "Liver"


def test_dicompyler_rtstruct_on_its_ct_slice(fixtures, tmp_path, monkeypatch):
    ct = fixtures / "dicompyler_ct.0.dcm"
    rt = fixtures / "dicompyler_rtss.dcm"
    vol = read_rtstruct(rt, ct)
    assert vol.meta.extra["structures"] == [{"value": 1, "name": "BODY"}]  # the only ROI on this slice
    assert any("lie on no slice" in w for w in vol.meta.warnings)
    body = vol.array[:, :, 0] > 0
    # area: pixel count against the shoelace area of the BODY contours on this slice (pydicom only)
    header = pydicom.dcmread(ct, stop_before_pixels=True)
    z = float(header.ImagePositionPatient[2])
    ps = [float(v) for v in header.PixelSpacing]
    area = 0.0
    rtds = pydicom.dcmread(rt)
    for c in rtds.ROIContourSequence[0].ContourSequence:
        pts = np.asarray(c.ContourData, float).reshape(-1, 3)
        if abs(pts[0, 2] - z) < 0.01:
            x, y = pts[:, 0], pts[:, 1]
            area += 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert body.sum() * ps[0] * ps[1] == pytest.approx(area, rel=0.02)
    # alignment with the image: tissue inside the body outline, air outside
    image = read_volume(ct)
    hu = image.array[:, :, 0]
    assert np.median(hu[body]) > -200 and np.median(hu[~body]) < -900
    # rt-utils' rasterisation of the same contours agrees
    pytest.importorskip("rt_utils")
    import rt_utils.rtstruct_builder

    folder = tmp_path / "ct"
    folder.mkdir()
    shutil.copy(ct, folder / ct.name)
    # rt-utils 1.2.7 calls warnings.warn without importing warnings (its warn_only path)
    monkeypatch.setattr(rt_utils.rtstruct_builder, "warnings", warnings, raising=False)
    with warnings.catch_warnings():  # it notes that the other 97 referenced slices are not here
        warnings.simplefilter("ignore")
        builder = rt_utils.RTStructBuilder.create_from(str(folder), str(rt), warn_only=True)
    theirs = builder.get_roi_mask_by_name("BODY")[:, :, 0]  # [row, column]
    assert dice(theirs, body.T[::-1]) > 0.97
    png = save_overlay_png(image, vol, tmp_path / "dicompyler_body_overlay.png", window=(40, 400))
    keep_artifact(png)
    assert png.stat().st_size > 5000


def test_pydicom_rtstruct_is_parsed(fixtures):
    path = fixtures / "pydicom_rtstruct.dcm"  # implicit VR, no preamble
    rois = parse_rtstruct(path)
    assert [(r.number, r.name) for r in rois] == [(1, "patient"), (2, "Isocenter 1"), (3, "Isocenter 2")]
    assert rois[0].color == (220, 160, 120) and rois[0].interpreted_type == "EXTERNAL"
    ds = pydicom.dcmread(path, force=True)
    reference = [
        np.asarray(c.ContourData, float).reshape(-1, 3) for c in ds.ROIContourSequence[0].ContourSequence
    ]
    assert len(rois[0].contours) == len(reference) == 3
    for ours, theirs in zip(rois[0].contours, reference):
        assert np.array_equal(ours, theirs)
    assert rois[1].other_contours == {"POINT": 1} and not rois[1].contours
