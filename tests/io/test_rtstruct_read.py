"""RTSTRUCT import (medseg.io.dicom.rtstruct_read): interoperable fill and frames of reference.

References: rt-utils (reads with OpenCV fillPoly, writes contours through boundary
voxel centres), analytic voxel counts of the handed fault cases, and the synthetic
label maps written independently by tests/export/helpers.py.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medseg.errors import GeometryMismatchError
from medseg.export import read_rtstruct as exported_read_rtstruct
from medseg.export import write_rtstruct
from medseg.io import read_volume
from medseg.io.dicom.label_objects import read_label_object
from medseg.io.dicom.rtstruct_read import read_rtstruct
from tests.export.helpers import make_synthetic

CASES = Path("/work/shared/cases")
CENTRES = CASES / "rtstruct_contours_on_voxel_centres"
TWO_FRAMES = CASES / "rtstruct_two_frames_of_reference"
LOGGER = "medseg.io.dicom.rtstruct_read"


def _expected_box(shape: tuple[int, int, int]) -> np.ndarray:
    """The handed boxes in medseg's voxel order (array[c, Rows-1-r, k] = frame_k[r, c])."""
    frames = np.zeros((shape[2], shape[1], shape[0]), dtype=bool)
    frames[2, 4:9, 6:11] = True  # 5x5: vertices x -5.2..-2.0, y -8.8..-5.6 at 0.8 mm from (-10, -12)
    frames[3, 5:8, 3:10] = True  # 3x7: x -7.6..-2.8, y -8.0..-6.4
    return np.transpose(frames, (2, 1, 0))[:, ::-1]


@pytest.mark.skipif(not CENTRES.exists(), reason="handed fault case not present")
def test_contours_on_voxel_centres_keep_their_boundary_voxels():
    vol = read_rtstruct(CENTRES / "rtstruct.dcm", CENTRES / "ct")
    ours = vol.array > 0
    assert [int(ours[:, :, k].sum()) for k in range(ours.shape[2])] == [0, 0, 25, 21, 0, 0]
    assert np.array_equal(ours, _expected_box(ours.shape))
    assert np.array_equal(read_label_object(CENTRES / "rtstruct.dcm", CENTRES / "ct").array, vol.array)
    from medseg.data.cases import read_label  # training reads RTSTRUCT labels through the same reader

    assert np.array_equal(read_label(CENTRES / "rtstruct.dcm", CENTRES / "ct", None).array > 0, ours)


@pytest.mark.skipif(not CENTRES.exists(), reason="handed fault case not present")
def test_contours_on_voxel_centres_agree_with_rt_utils(monkeypatch):
    pytest.importorskip("rt_utils")
    import rt_utils
    import rt_utils.rtstruct_builder

    monkeypatch.setattr(rt_utils.rtstruct_builder, "warnings", warnings, raising=False)
    builder = rt_utils.RTStructBuilder.create_from(str(CENTRES / "ct"), str(CENTRES / "rtstruct.dcm"))
    # [row, column, slice in rt-utils' order]; rt-utils 1.2.7 allocates (Columns, Rows) slices, so on
    # this 16-row, 20-column series compare the (row, column) positions, which fit both
    theirs = builder.get_roi_mask_by_name("box")
    by_uid = {d.SOPInstanceUID: theirs[:, :, n] for n, d in enumerate(builder.series_data)}
    vol = read_rtstruct(CENTRES / "rtstruct.dcm", CENTRES / "ct")
    for k, uid in enumerate(vol.meta.sop_instance_uids):
        ours = np.argwhere(vol.array[:, ::-1, k].T > 0)
        assert np.array_equal(ours, np.argwhere(by_uid[uid])), k


def _swap_frame_items(src: Path, out: Path) -> Path:
    ds = pydicom.dcmread(src)
    ds.ReferencedFrameOfReferenceSequence = list(ds.ReferencedFrameOfReferenceSequence)[::-1]
    ds.save_as(out)
    return out


@pytest.mark.skipif(not TWO_FRAMES.exists(), reason="handed fault case not present")
@pytest.mark.parametrize("order", ["as handed", "mr frame first"])
def test_two_frames_keep_the_ct_roi_and_leave_out_the_mr_roi(order, tmp_path, caplog):
    path = TWO_FRAMES / "rtstruct.dcm"
    if order == "mr frame first":
        path = _swap_frame_items(path, tmp_path / "swapped.dcm")
        first = pydicom.dcmread(path).ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
        assert first != pydicom.dcmread(TWO_FRAMES / "ct" / "IM000.dcm").FrameOfReferenceUID
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        vol = read_rtstruct(path, TWO_FRAMES / "ct")
    assert [int(vol.array[:, :, k].astype(bool).sum()) for k in range(vol.shape[2])] == [0, 0, 16, 0, 0, 0]
    assert vol.meta.extra["structures"] == [{"value": 1, "name": "gtv_ct"}]
    named = [r for r in caplog.records if "gtv_mr" in r.getMessage()]
    assert len(named) == 1 and named[0].levelname == "WARNING" and "\n" not in named[0].getMessage()
    assert "gtv_ct" not in named[0].getMessage()


def _write_three_frames(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A medseg RTSTRUCT of the synthetic series whose ROIs 3 and 4 are moved to two other frames."""
    syn = make_synthetic(tmp_path / "ct", rows=24, cols=26, oblique=False)
    mask = read_volume(syn.folder).with_array(syn.label_volume_array())
    out = write_rtstruct(mask, syn.folder, {"1": "liver", "3": "tumour", "4": "marker"}, tmp_path / "rt.dcm")
    ds = pydicom.dcmread(out)
    for roi in ds.StructureSetROISequence:
        if roi.ROINumber in (3, 4):
            roi.ReferencedFrameOfReferenceUID = f"1.2.3.{roi.ROINumber}"
    for uid in ("1.2.3.3", "1.2.3.4"):
        item = Dataset()
        item.FrameOfReferenceUID = uid
        ds.ReferencedFrameOfReferenceSequence.append(item)
    ds.save_as(out)
    return out, syn.folder, np.where(syn.label_volume_array() == 1, 1, 0)


def test_rois_are_placed_by_their_own_frame_in_any_item_order(tmp_path, rng, caplog):
    path, ct, expected = _write_three_frames(tmp_path)
    ds = pydicom.dcmread(path)
    for n in range(6):
        for keyword in (
            "ReferencedFrameOfReferenceSequence",
            "StructureSetROISequence",
            "ROIContourSequence",
        ):
            items = list(ds[keyword].value)
            ds[keyword].value = [items[i] for i in rng.permutation(len(items))]
        shuffled = ds.save_as(tmp_path / f"shuffled{n}.dcm") or tmp_path / f"shuffled{n}.dcm"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            vol = exported_read_rtstruct(shuffled, ct)
        assert np.array_equal(vol.array, expected)
        named = [r.getMessage() for r in caplog.records if "tumour" in r.getMessage()]
        assert len(named) == 1 and "marker" in named[0] and "1.2.3.3" in named[0] and "1.2.3.4" in named[0]


def test_roi_frames_not_stated(tmp_path):
    path, ct, _ = _write_three_frames(tmp_path)
    ds = pydicom.dcmread(path)
    for roi in ds.StructureSetROISequence:
        del roi.ReferencedFrameOfReferenceUID
    ds.save_as(tmp_path / "ambiguous.dcm")
    with pytest.raises(GeometryMismatchError, match="not stated"):  # several frames listed, none named
        read_rtstruct(tmp_path / "ambiguous.dcm", ct)
    ds.ReferencedFrameOfReferenceSequence = list(ds.ReferencedFrameOfReferenceSequence)[:1]
    ds.save_as(tmp_path / "one_frame.dcm")  # one frame listed: every ROI is in it
    assert set(np.unique(read_rtstruct(tmp_path / "one_frame.dcm", ct).array)) == {0, 1, 3, 4}


def test_every_roi_elsewhere_is_refused(tmp_path):
    path, ct, _ = _write_three_frames(tmp_path)
    ds = pydicom.dcmread(path)
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = "1.2.3.9"
    ds.save_as(tmp_path / "elsewhere.dcm")
    with pytest.raises(GeometryMismatchError, match="no ROI is in frame of reference"):
        read_rtstruct(tmp_path / "elsewhere.dcm", ct)


def test_rt_utils_round_trips_are_exact_both_ways(tmp_path, monkeypatch):
    """rt-utils writes contours through boundary voxel centres (holes included) and medseg
    reads them exactly; rt-utils reads medseg's contours exactly."""
    pytest.importorskip("rt_utils")
    import rt_utils
    import rt_utils.rtstruct_builder

    monkeypatch.setattr(rt_utils.rtstruct_builder, "warnings", warnings, raising=False)
    syn = make_synthetic(tmp_path / "ct", rows=30, cols=30, pixel_spacing=(0.8, 0.8))
    extra = np.zeros((30, 30), dtype=bool)
    extra[3:12, 18:21] = extra[9:12, 18:27] = True  # an L
    extra[15:26, 3:14] = True
    extra[18:23, 6:11] = False  # a square ring
    extra[20, 8] = True  # a one-voxel island in its hole
    builder = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(syn.folder))
    frames = {d.SOPInstanceUID: syn.frames[d.SOPInstanceUID] for d in builder.series_data}
    for name, value in (("liver", 1), ("tumour", 3), ("marker", 4)):
        stack = np.stack([frames[d.SOPInstanceUID] == value for d in builder.series_data], axis=-1)
        builder.add_roi(mask=stack, name=name)
    builder.add_roi(mask=np.stack([extra] * len(builder.series_data), axis=-1), name="shapes")
    builder.save(str(tmp_path / "theirs.dcm"))
    ours = read_rtstruct(tmp_path / "theirs.dcm", syn.folder, overlap="split")
    names = [s["name"] for s in ours.meta.extra["structures"]]
    for k, f in enumerate(syn.order):
        uid = syn.series.sop_uids[f]
        for channel, name in enumerate(names):
            got = ours.array[:, ::-1, k, channel].T > 0
            want = extra if name == "shapes" else frames[uid] == {"liver": 1, "tumour": 3, "marker": 4}[name]
            assert np.array_equal(got, want), (name, k)
    mask = read_volume(syn.folder).with_array(syn.label_volume_array())
    out = write_rtstruct(
        mask, syn.folder, {"1": "liver", "3": "tumour", "4": "marker"}, tmp_path / "ours.dcm"
    )
    back = rt_utils.RTStructBuilder.create_from(str(syn.folder), str(out))
    for name, value in (("liver", 1), ("tumour", 3), ("marker", 4)):
        got = back.get_roi_mask_by_name(name)
        want = np.stack([syn.frames[d.SOPInstanceUID] == value for d in back.series_data], axis=-1)
        assert np.array_equal(got, want), name
