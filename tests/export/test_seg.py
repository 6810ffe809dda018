"""DICOM SEG export/import on a synthetic oblique series, checked by highdicom, dcmqi and dciodvfy."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg import __version__
from medseg.errors import (
    AmbiguousSeriesError,
    ConfigError,
    GeometryMismatchError,
    SeriesGeometryError,
)
from medseg.export import EmptyMaskError, ExportOptions, read_label_object, read_seg, write_seg
from medseg.export.reference import PATIENT_STUDY_ATTRIBUTES
from medseg.io import read_volume, write_volume
from medseg.volume import Volume
from tests.export.helpers import assert_dciodvfy_clean, dcmqi_read, embed_exactly
from tests.fixtures.dicom_factory import base_dataset, regular_positions, write_series


@pytest.fixture(scope="module")
def seg_file(synthetic, synthetic_mask, labels_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "mask.seg.dcm"
    write_seg(synthetic_mask, synthetic.folder, labels_file, out, ExportOptions(model_name="unet-test"))
    return out


def test_seg_reads_back_identically_with_medseg_and_highdicom(seg_file, synthetic, synthetic_mask):
    back = read_seg(seg_file, synthetic.folder)
    assert np.array_equal(back.affine, synthetic_mask.affine)
    assert np.array_equal(back.array, synthetic_mask.array)  # label values 1, 3, 4 restored
    assert read_label_object(seg_file, synthetic.folder).array.tolist() == back.array.tolist()
    # highdicom, frame by frame against the label drawn in each file's own pixel space
    seg = hd.seg.segread(seg_file)
    uids = synthetic.series.sop_uids
    pixels = seg.get_pixels_by_source_instance(
        uids, combine_segments=True, assert_missing_frames_are_empty=True
    )
    names = {s.SegmentNumber: s.SegmentLabel for s in seg.SegmentSequence}
    value_of = {"liver": 1, "Tumour": 3, "my_marker": 4}
    for f, uid in enumerate(uids):
        expected = synthetic.frames[uid]
        got = np.zeros_like(expected)
        for number, name in names.items():
            got[pixels[f] == number] = value_of[name]
        assert np.array_equal(got, expected), f"frame of {uid}"


def test_dcmqi_reads_the_same_label_map(seg_file, synthetic_mask, tmp_path):
    files, meta = dcmqi_read(seg_file, tmp_path / "dcmqi")
    assert len(files) == 3
    label_of = {}
    for group in meta["segmentAttributes"]:
        for segment in group:
            label_of[int(segment["labelID"])] = int(segment["SegmentDescription"].split()[-1])
    combined = np.zeros(synthetic_mask.spatial_shape, dtype=np.uint8)
    for path in files:
        vol = read_volume(path)
        placed = embed_exactly(vol.array, vol.affine, synthetic_mask.affine, synthetic_mask.spatial_shape)
        (segment_number,) = [int(v) for v in np.unique(placed) if v != 0]
        assert not combined[placed > 0].any()
        combined[placed > 0] = label_of[segment_number]
    assert np.array_equal(combined, synthetic_mask.array)


def test_seg_content_references_and_identification(seg_file, synthetic):
    ds = pydicom.dcmread(seg_file)
    src = pydicom.dcmread(synthetic.series.files[0])
    warnings = assert_dciodvfy_clean(seg_file)
    assert all("Error" not in w for w in warnings)
    # one segment per class present (2 is named but absent), consecutive numbers
    segments = ds.SegmentSequence
    assert [s.SegmentNumber for s in segments] == [1, 2, 3]
    assert [s.SegmentLabel for s in segments] == ["liver", "Tumour", "my_marker"]
    liver, tumour, marker = segments
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert tumour.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert tumour.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert marker.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"  # generic Tissue
    assert hd.color.CIELabColor.from_dicom_value(tuple(tumour.RecommendedDisplayCIELabValue)).to_rgb() == (
        255,
        0,
        0,
    )
    algorithm = liver.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("medseg", __version__)
    assert "unet-test" in str(algorithm.AlgorithmParameters)
    assert ds.SoftwareVersions == f"medseg {__version__}" and ds.ManufacturerModelName == "unet-test"
    # compact: one frame per non-empty (slice, segment) pair
    nonempty = sum(int((f == v).any()) for f in synthetic.frames.values() for v in (1, 3, 4))
    assert int(ds.NumberOfFrames) == nonempty
    # references: the source series, its instances, its frame of reference; new UIDs
    ref_series = ds.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == src.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ref_series.ReferencedInstanceSequence} == set(
        synthetic.series.sop_uids
    )
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SOPInstanceUID not in synthetic.series.sop_uids
    # each frame sits where its referenced source image is
    position_of = {
        uid: np.asarray(p, float) for uid, p in zip(synthetic.series.sop_uids, synthetic.series.positions)
    }
    for frame in ds.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        assert np.allclose(ipp, position_of[uid], atol=1e-4)
    # only the attributes that attach the SEG to its study are copied from the source
    for keyword in PATIENT_STUDY_ATTRIBUTES:
        assert str(ds.get(keyword, "")) == str(src.get(keyword, "")), keyword
    for keyword in ("PatientAge", "PatientWeight", "PatientComments", "StudyDescription", "OtherPatientIDs"):
        assert keyword in src and keyword not in ds, keyword


def test_mask_in_other_orientations_exports_the_same(synthetic, synthetic_mask, labels_file, tmp_path):
    expected = synthetic_mask.array
    for codes in ("RAS", "SPL", "ILA"):
        path = tmp_path / f"mask_{codes}.nii.gz"
        write_volume(synthetic_mask.reoriented(codes), path)
        out = write_seg(path, synthetic.folder, labels_file, tmp_path / f"{codes}.dcm")
        assert np.array_equal(read_seg(out, synthetic.folder).array, expected), codes


def test_read_without_reference_uses_the_segs_own_geometry(seg_file, synthetic_mask):
    own = read_seg(seg_file)
    placed = embed_exactly(own.array, own.affine, synthetic_mask.affine, synthetic_mask.spatial_shape)
    assert np.array_equal(placed, synthetic_mask.array)
    assert own.meta.warnings and "only the slices" in own.meta.warnings[0]


def test_fractional_seg_keeps_probabilities(synthetic, synthetic_mask, tmp_path):
    lab = synthetic_mask.array
    probs = np.zeros((*lab.shape, 2), dtype=np.float32)
    probs[..., 0] = np.where(lab == 1, 0.9, 0.1 * (lab == 3))
    probs[..., 1] = np.where(lab == 3, 0.7, 0.0)
    prob_volume = Volume(probs, synthetic_mask.affine)
    labels = {"1": "liver", "2": "tumour"}
    out = write_seg(
        prob_volume, synthetic.folder, labels, tmp_path / "frac.dcm", ExportOptions(fractional=True)
    )
    assert_dciodvfy_clean(out)
    ds = pydicom.dcmread(out)
    assert ds.SegmentationType == "FRACTIONAL"
    seg = hd.seg.segread(out)
    got = seg.get_pixels_by_source_instance(synthetic.series.sop_uids, assert_missing_frames_are_empty=True)
    for f, uid in enumerate(synthetic.series.sop_uids):
        frame = synthetic.frames[uid]
        expected_liver = np.where(frame == 1, 0.9, 0.1 * (frame == 3))
        assert np.allclose(got[f, :, :, 0], expected_liver, atol=0.5 / 255 + 1e-6)
        assert np.allclose(got[f, :, :, 1], np.where(frame == 3, 0.7, 0.0), atol=0.5 / 255 + 1e-6)
    # imported as a label map: probabilities above 0.5, the tumour (higher value) wins overlaps
    back = read_seg(out, synthetic.folder, overlap="last")
    assert np.array_equal(back.array, np.where(lab == 3, 2, np.where(lab == 1, 1, 0)))


def test_mask_on_another_grid_is_refused(synthetic, synthetic_mask, labels_file, tmp_path):
    shifted = synthetic_mask.affine.copy()
    shifted[:3, 3] += shifted[:3, 0] * 0.5  # half a voxel along i
    with pytest.raises(GeometryMismatchError, match="is not on the grid"):
        write_seg(Volume(synthetic_mask.array, shifted), synthetic.folder, labels_file, tmp_path / "x.dcm")
    cropped = synthetic_mask.with_array(synthetic_mask.array)
    cropped = Volume(cropped.array[:-1], cropped.affine)
    with pytest.raises(GeometryMismatchError):
        write_seg(cropped, synthetic.folder, labels_file, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_label_and_content_errors(synthetic, synthetic_mask, tmp_path):
    with pytest.raises(ConfigError, match=r"label value\(s\) 3, 4 that the labels file does not name"):
        write_seg(synthetic_mask, synthetic.folder, {"1": "liver"}, tmp_path / "x.dcm")
    with pytest.raises(EmptyMaskError):
        write_seg(
            synthetic_mask.with_array(np.zeros_like(synthetic_mask.array)),
            synthetic.folder,
            None,
            tmp_path / "x.dcm",
        )
    with pytest.raises(ConfigError, match="non-integer"):
        write_seg(
            synthetic_mask.with_array(synthetic_mask.array * 0.5), synthetic.folder, None, tmp_path / "x.dcm"
        )
    # without a labels file: generic names, values kept
    out = write_seg(synthetic_mask, synthetic.folder, None, tmp_path / "generic.dcm")
    ds = pydicom.dcmread(out)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Segment 1", "Segment 3", "Segment 4"]
    assert np.array_equal(read_seg(out, synthetic.folder).array, synthetic_mask.array)


def test_reference_series_problems(tmp_path, synthetic_mask):
    # 4D series: two time points at each position
    pos = regular_positions((0, 0, 0), (0, 0, 1), 2.0, 3)
    study, _ = base_dataset()
    write_series(tmp_path / "dyn", np.concatenate([pos, pos]), temporal=[1, 1, 1, 2, 2, 2], study=study)
    vol4d = read_volume(tmp_path / "dyn")
    mask = Volume(np.ones(vol4d.spatial_shape, np.uint8), vol4d.affine)
    with pytest.raises(SeriesGeometryError, match="4D series"):
        write_seg(mask, tmp_path / "dyn", None, tmp_path / "x.dcm")
    # two series in one folder: ambiguous unless one is chosen
    write_series(tmp_path / "two" / "a", pos, series_number=1, study=study)
    write_series(tmp_path / "two" / "b", pos + np.array([0.0, 0.0, 50.0]), series_number=2, study=study)
    grid = read_volume(tmp_path / "two", series="1")
    mask = Volume(np.ones(grid.spatial_shape, np.uint8), grid.affine)
    with pytest.raises(AmbiguousSeriesError):
        write_seg(mask, tmp_path / "two", None, tmp_path / "x.dcm")
    out = write_seg(mask, tmp_path / "two", None, tmp_path / "one.dcm", ExportOptions(series="1"))
    assert np.array_equal(read_seg(out, tmp_path / "two", series="1").array, mask.array)
    # irregular spacing: exports refuse (nothing to reference between the slices)
    uneven = np.array([[0, 0, 0], [0, 0, 2], [0, 0, 5]], float)
    write_series(tmp_path / "uneven", uneven, study=study)
    grid = read_volume(tmp_path / "uneven", resample_uneven=True)
    mask = Volume(np.ones(grid.spatial_shape, np.uint8), grid.affine)
    with pytest.raises(SeriesGeometryError, match="cannot be referenced"):
        write_seg(mask, tmp_path / "uneven", None, tmp_path / "x.dcm")


def test_seg_placed_by_geometry_on_another_series_of_its_frame_of_reference(seg_file, synthetic, tmp_path):
    """A SEG whose referenced instances are not in the reference folder (a re-sent copy of the
    series with new instance UIDs) is placed by its plane positions; a grid that differs is refused."""
    from pydicom.uid import generate_uid

    copy_dir, moved_dir = tmp_path / "copy", tmp_path / "moved"
    copy_dir.mkdir()
    moved_dir.mkdir()
    for f in synthetic.series.files:
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(copy_dir / f.name)
        ds.PixelSpacing = [0.5, 0.5]
        ds.save_as(moved_dir / f.name)
    expected = read_seg(seg_file, synthetic.folder).array
    assert np.array_equal(read_seg(seg_file, copy_dir).array, expected)
    with pytest.raises(GeometryMismatchError, match="not on the grid"):
        read_seg(seg_file, moved_dir)


def test_label_map_as_fractional_seg(synthetic, synthetic_mask, labels_file, tmp_path):
    out = write_seg(
        synthetic_mask, synthetic.folder, labels_file, tmp_path / "f.dcm", ExportOptions(fractional=True)
    )
    assert pydicom.dcmread(out, stop_before_pixels=True).SegmentationType == "FRACTIONAL"
    assert np.array_equal(read_seg(out, synthetic.folder).array, synthetic_mask.array)
