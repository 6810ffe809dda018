"""RTSTRUCT export/import on synthetic series, checked by rt-utils, pydicom geometry and dciodvfy."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest

from medseg import __version__
from medseg.errors import GeometryMismatchError, MedsegError
from medseg.export import ExportOptions, OverlapError, read_label_object, read_rtstruct, write_rtstruct
from medseg.export.reference import PATIENT_STUDY_ATTRIBUTES
from medseg.io import read_volume
from tests.export.helpers import assert_dciodvfy_clean, dice, make_synthetic


@pytest.fixture(scope="module")
def rt_file(synthetic, synthetic_mask, labels_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("rt") / "mask.rtstruct.dcm"
    write_rtstruct(synthetic_mask, synthetic.folder, labels_file, out, ExportOptions(model_name="unet-test"))
    return out


def test_round_trip_is_exact(rt_file, synthetic, synthetic_mask):
    back = read_rtstruct(rt_file, synthetic.folder)
    assert np.array_equal(back.affine, synthetic_mask.affine)
    assert np.array_equal(back.array, synthetic_mask.array)
    assert np.array_equal(read_label_object(rt_file, synthetic.folder).array, back.array)
    assert [s["name"] for s in back.meta.extra["structures"]] == ["liver", "Tumour", "my_marker"]


def test_contours_lie_on_their_slices_in_patient_coordinates(rt_file, synthetic):
    """Independent geometry with pydicom: every contour point is in the plane of the image it
    references, inside its field of view, and encloses that image's labelled pixels."""
    ds = pydicom.dcmread(rt_file)
    s = synthetic.series
    normal = np.cross(s.row_dir, s.col_dir)
    ipp = dict(zip(s.sop_uids, s.positions))
    n_contours = {}
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
            assert len(pts) == contour.NumberOfContourPoints
            rel = pts - ipp[uid]
            assert np.abs(rel @ normal).max() < 1e-3  # in the plane of its image
            col = rel @ s.row_dir / s.pixel_spacing[1]
            row = rel @ s.col_dir / s.pixel_spacing[0]
            assert row.min() > -1 and row.max() < s.rows and col.min() > -1 and col.max() < s.cols
            key = (roi.ReferencedROINumber, uid)
            n_contours[key] = n_contours.get(key, 0) + 1
    # label 1 on a middle slice: outer ring boundary + hole + separate island = 3 contours
    middle = s.sop_uids[synthetic.order[2]]
    assert n_contours[(1, middle)] == 3 and n_contours[(3, middle)] == 1


def test_structure_set_content_and_references(rt_file, synthetic):
    ds = pydicom.dcmread(rt_file)
    src = pydicom.dcmread(synthetic.series.files[0])
    warnings = assert_dciodvfy_clean(rt_file)
    assert not [w for w in warnings if "Error" in w]
    assert ds.Modality == "RTSTRUCT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3"
    rois = {r.ROINumber: r for r in ds.StructureSetROISequence}
    assert {n: r.ROIName for n, r in rois.items()} == {1: "liver", 3: "Tumour", 4: "my_marker"}
    colors = {c.ReferencedROINumber: [int(v) for v in c.ROIDisplayColor] for c in ds.ROIContourSequence}
    assert colors[3] == [255, 0, 0]
    algorithm = rois[1].ROIDerivationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("medseg", __version__)
    assert "unet-test" in algorithm.AlgorithmParameters and rois[1].ROIGenerationAlgorithm == "AUTOMATIC"
    observations = {o.ReferencedROINumber: o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    assert observations[1] == "ORGAN"
    for_item = ds.ReferencedFrameOfReferenceSequence[0]
    assert for_item.FrameOfReferenceUID == src.FrameOfReferenceUID == ds.FrameOfReferenceUID
    study = for_item.RTReferencedStudySequence[0]
    assert study.ReferencedSOPInstanceUID == src.StudyInstanceUID
    series = study.RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == src.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ContourImageSequence} == set(synthetic.series.sop_uids)
    assert all(r.ReferencedFrameOfReferenceUID == src.FrameOfReferenceUID for r in rois.values())
    assert (
        ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID not in synthetic.series.sop_uids
    )
    for keyword in PATIENT_STUDY_ATTRIBUTES:
        assert str(ds.get(keyword, "")) == str(src.get(keyword, "")), keyword
    for keyword in ("PatientAge", "PatientWeight", "PatientComments", "StudyDescription", "OtherPatientIDs"):
        assert keyword in src and keyword not in ds, keyword


def test_rt_utils_reads_the_structures(tmp_path):
    """rt-utils (an independent reader: OpenCV polygon filling) recovers every structure."""
    rt_utils = pytest.importorskip("rt_utils")
    syn = make_synthetic(tmp_path / "ct", rows=30, cols=30, pixel_spacing=(0.8, 0.8))  # rt-utils: square only
    mask = read_volume(syn.folder).with_array(syn.label_volume_array())
    out = write_rtstruct(mask, syn.folder, {"1": "liver", "3": "tumour", "4": "marker"}, tmp_path / "rt.dcm")
    rt = rt_utils.RTStructBuilder.create_from(str(syn.folder), str(out))
    assert sorted(rt.get_roi_names()) == ["liver", "marker", "tumour"]
    for name, value in (("liver", 1), ("tumour", 3), ("marker", 4)):
        got = rt.get_roi_mask_by_name(name)  # [row, column, slice in rt-utils' order]
        expected = np.stack([syn.frames[d.SOPInstanceUID] == value for d in rt.series_data], axis=-1)
        assert dice(got, expected) >= 0.97, name


def test_overlapping_rois_on_import(rt_file, synthetic, tmp_path):
    ds = pydicom.dcmread(rt_file)
    extra = copy.deepcopy(ds.StructureSetROISequence[0])
    extra.ROINumber, extra.ROIName = 9, "liver copy"
    ds.StructureSetROISequence.append(extra)
    contours = copy.deepcopy(ds.ROIContourSequence[0])
    contours.ReferencedROINumber = 9
    ds.ROIContourSequence.append(contours)
    path = tmp_path / "overlap.dcm"
    ds.save_as(path)
    with pytest.raises(OverlapError, match="'liver' and 'liver copy' overlap"):
        read_rtstruct(path, synthetic.folder)
    last = read_rtstruct(path, synthetic.folder, overlap="last")
    base = read_rtstruct(rt_file, synthetic.folder).array
    assert np.array_equal(last.array, np.where(base == 1, 9, base))
    split = read_rtstruct(path, synthetic.folder, overlap="split")
    assert split.array.shape[-1] == 4 and np.array_equal(split.array[..., 0], split.array[..., 3])
    # a labels file picks and renumbers structures by name; the others are left out
    picked = read_rtstruct(path, synthetic.folder, labels={"7": "Tumour", "8": "LIVER"})
    assert np.array_equal(picked.array, np.select([base == 3, base == 1], [7, 8], 0))
    assert any("liver copy" in w for w in picked.meta.warnings)


def test_import_errors(rt_file, synthetic, tmp_path):
    with pytest.raises(MedsegError, match=r"RTSTRUCT.*--reference"):
        read_label_object(rt_file)
    ds = pydicom.dcmread(rt_file)
    ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.4"
    ds.FrameOfReferenceUID = "1.2.3.4"
    for roi in ds.StructureSetROISequence:  # each ROI is placed by its own frame
        roi.ReferencedFrameOfReferenceUID = "1.2.3.4"
    path = tmp_path / "other_for.dcm"
    ds.save_as(path)
    with pytest.raises(GeometryMismatchError, match="frame of reference"):
        read_rtstruct(path, synthetic.folder)
