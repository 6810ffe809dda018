"""The TotalSegmentator example CT (real DICOM, JPEG 2000) exports to SEG and RTSTRUCT and comes back
aligned, as read by medseg, highdicom, dcmqi and rt-utils."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg.export import ExportOptions, read_label_object, write_rtstruct, write_seg
from medseg.export.preview import save_overlay_png
from medseg.io import read_volume
from tests.conftest import shared_path
from tests.export.helpers import assert_dciodvfy_clean, dcmqi_read, dice, embed_exactly, keep_artifact

pytestmark = [pytest.mark.shared, pytest.mark.slow]

#: A handful of the 31 classes (time): large organs, a vessel, a vertebra, a thin rib, a muscle.
CLASSES = (1, 5, 6, 7, 32, 52, 86, 98)


@pytest.fixture(scope="module")
def case(shared_datasets, tmp_path_factory):
    root = shared_path(shared_datasets, "totalsegmentator_examples")
    ct_dir = root / "example_ct_dicom"
    full = read_volume(root / "example_seg_dicom.nii.gz")
    mask = full.with_array(np.where(np.isin(full.array, CLASSES), full.array, 0).astype(np.uint8))
    class_map = json.loads((root / "class_map_total_v2.json").read_text())
    labels = {str(c): class_map[str(c)] for c in CLASSES}
    out = tmp_path_factory.mktemp("totalseg")
    options = ExportOptions(model_name="TotalSegmentator")
    seg = write_seg(mask, ct_dir, root / "class_map_total_v2.json", out / "ts.seg.dcm", options)
    rt = write_rtstruct(mask, ct_dir, labels, out / "ts.rtstruct.dcm", options)
    return {"root": root, "ct": ct_dir, "mask": mask, "labels": labels, "seg": seg, "rt": rt, "out": out}


def _sop_uids_by_file(ct_dir):
    # this de-identified series keeps its SOP Instance UIDs only in the file meta
    return {
        f: pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
        for f in ct_dir.iterdir()
    }


def test_seg_validates_and_reads_back_identically(case):
    warnings = assert_dciodvfy_clean(case["seg"])
    assert all("Error" not in w for w in warnings)
    back = read_label_object(case["seg"], case["ct"])
    assert np.array_equal(back.affine, case["mask"].affine)
    assert np.array_equal(back.array, case["mask"].array)
    ds = pydicom.dcmread(case["seg"])
    assert len(ds.SegmentSequence) == len(CLASSES)
    assert {
        i.ReferencedSOPInstanceUID for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    } == set(_sop_uids_by_file(case["ct"]).values())


def test_seg_read_by_highdicom_per_source_file(case):
    """highdicom's frames, placed by each file's own ImagePositionPatient (pydicom only)."""
    seg = hd.seg.segread(case["seg"])
    uids = _sop_uids_by_file(case["ct"])
    files = list(uids)
    frames = seg.get_pixels_by_source_instance(
        [uids[f] for f in files], combine_segments=True, assert_missing_frames_are_empty=True
    )
    value_of = {s.SegmentNumber: int(s.SegmentDescription.split()[-1]) for s in seg.SegmentSequence}
    mask = case["mask"]
    to_voxel = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ mask.affine)
    for f, frame in zip(files, frames):
        ipp = np.asarray(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient, float)
        i, j, k = np.rint((to_voxel @ np.r_[ipp, 1.0])[:3]).astype(int)
        assert (i, j) == (0, 511)
        labelled = np.zeros_like(frame, dtype=np.uint8)
        for number, value in value_of.items():
            labelled[frame == number] = value
        assert np.array_equal(labelled.T[:, ::-1], mask.array[:, :, k])


def test_seg_read_by_dcmqi(case):
    files, meta = dcmqi_read(case["seg"], case["out"] / "dcmqi")
    by_label = {}
    for group in meta["segmentAttributes"]:
        for s in group:
            by_label[int(s["labelID"])] = int(s["SegmentDescription"].split()[-1])
    mask = case["mask"]
    combined = np.zeros(mask.spatial_shape, dtype=np.uint8)
    for path in files:
        vol = read_volume(path)
        placed = embed_exactly(vol.array, vol.affine, mask.affine, mask.spatial_shape)
        for number in (int(v) for v in np.unique(placed) if v != 0):
            combined[placed == number] = by_label[number]
    assert np.array_equal(combined, mask.array)


def test_rtstruct_validates_and_reads_back(case, tmp_path):
    warnings = assert_dciodvfy_clean(case["rt"])
    assert all("Error" not in w for w in warnings)
    back = read_label_object(case["rt"], case["ct"])
    assert np.array_equal(back.array, case["mask"].array)
    # rt-utils matches slices by the dataset's SOPInstanceUID, which this de-identified series
    # keeps only in its file meta: give rt-utils a copy with it filled in
    rt_utils = pytest.importorskip("rt_utils")
    copy_dir = tmp_path / "ct"
    copy_dir.mkdir()
    for f in case["ct"].iterdir():
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.save_as(copy_dir / f.name)
    rt = rt_utils.RTStructBuilder.create_from(str(copy_dir), str(case["rt"]))
    mask = case["mask"]
    to_voxel = np.linalg.inv(np.diag([-1.0, -1.0, 1.0, 1.0]) @ mask.affine)
    ks = [
        int(np.rint((to_voxel @ np.r_[np.asarray(d.ImagePositionPatient, float), 1.0])[2]))
        for d in rt.series_data
    ]
    scores = {}
    for value, name in case["labels"].items():
        theirs = rt.get_roi_mask_by_name(name)  # [row, column, slice in rt-utils' order]
        ours = np.stack([np.equal(mask.array[:, ::-1, k].T, int(value)) for k in ks], axis=-1)
        scores[name] = (dice(theirs, ours), int(ours.sum()))
    for name, (score, voxels) in scores.items():
        if voxels > 500:
            assert score >= 0.97, (name, score)


def test_overlay_and_intensities_show_alignment(case, tmp_path):
    ct = read_volume(case["ct"])
    back = read_label_object(case["rt"], case["ct"])
    assert np.allclose(ct.affine, back.affine)
    hu = ct.array
    assert 40 < np.mean(hu[back.array == 5]) < 160  # liver, portal venous phase
    assert np.mean(hu[back.array == 52]) > 120  # contrast-filled aorta
    assert np.mean(hu[back.array == 32]) > 150  # vertebra T12 (bone)
    png = save_overlay_png(
        ct, back, tmp_path / "totalseg_rtstruct_overlay.png", title="RTSTRUCT import on CT"
    )
    keep_artifact(png)
    from PIL import Image

    picture = np.asarray(Image.open(png).convert("RGB")).astype(int)
    coloured = (np.abs(picture[..., 0] - picture[..., 1]) > 40) | (
        np.abs(picture[..., 1] - picture[..., 2]) > 40
    )
    assert coloured.sum() > 500  # contours drawn over the grey CT
