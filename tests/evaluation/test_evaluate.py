"""``evaluate`` over folders: matching, rows, summary, files, empty masks, grids, labels, errors."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from medseg.errors import (
    ConfigError,
    GeometryMismatchError,
    InputNotFoundError,
    MedsegError,
    NoImageDataError,
    UnsupportedFormatError,
)
from medseg.evaluation import (
    CSV_COLUMNS,
    case_id,
    compute_metrics,
    evaluate,
    load_evaluation,
    parse_labels,
)
from medseg.io import read_volume
from tests.evaluation.synthetic import AFFINE, label_pair, write_dataset, write_labels


def test_case_ids_strip_extensions_and_channel_suffix():
    assert case_id("liver_007.nii.gz") == "liver_007"
    assert case_id("/x/liver_007_0000.nii.gz") == "liver_007"
    assert case_id("liver_007.nrrd") == "liver_007"
    assert case_id("a_0000.mha") == "a"
    assert case_id("slice_12.png") == "slice_12" == case_id("slice_12.tif")
    assert case_id("scan_0001.nii.gz") == "scan_0001"  # only _0000 is a channel suffix
    assert case_id("_0000.nii.gz") == "_0000"


def test_matching_lists_unmatched_cases(tmp_path):
    pred, ref = label_pair(1)
    write_labels(tmp_path / "ref" / "a.nii.gz", ref)
    write_labels(tmp_path / "ref" / "b.nrrd", ref)
    write_labels(tmp_path / "ref" / "only_ref.nii.gz", ref)
    write_labels(tmp_path / "pred" / "a_0000.nii.gz", pred)
    write_labels(tmp_path / "pred" / "b.nii.gz", pred)
    write_labels(tmp_path / "pred" / "only_pred.mha", pred)
    (tmp_path / "pred" / "plans.json").write_text("{}")
    (tmp_path / "pred" / ".hidden.nii.gz").write_text("not an image")
    result = evaluate(tmp_path / "pred", tmp_path / "ref")
    assert result.cases == ["a", "b"]
    assert result.unmatched_pred == ["only_pred"]
    assert result.unmatched_ref == ["only_ref"]
    assert result.summary["unmatched"] == {"pred": ["only_pred"], "ref": ["only_ref"]}
    text = result.to_markdown()
    assert "References without prediction (1): only_ref" in text
    assert "Predictions without reference (1): only_pred" in text


def test_rows_equal_direct_metrics_and_files_roundtrip(tmp_path):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=3)
    out = tmp_path / "out"
    result = evaluate(pred_dir, ref_dir, labels="1:head,2:tail", nsd_tolerance=2.0, output=out)
    assert [(r.case, r.class_id, r.class_name) for r in result.rows] == [
        (f"case_{n:03d}", k, name) for n in range(3) for k, name in ((1, "head"), (2, "tail"))
    ]
    spacing = read_volume(ref_dir / "case_000.nii.gz").spacing  # NIfTI stores the affine in float32
    assert spacing == pytest.approx((0.7, 0.9, 2.5), abs=1e-6)
    for row in result.rows:
        pred, ref = label_pair(int(row.case[-3:]))
        m = compute_metrics(pred == row.class_id, ref == row.class_id, spacing, nsd_tolerance=2.0)
        assert (row.dice, row.iou, row.hd95, row.assd, row.nsd) == (m.dice, m.iou, m.hd95, m.assd, m.nsd)
        voxel_ml = float(np.prod(spacing)) / 1000
        assert row.volume_ref_ml == pytest.approx(int((ref == row.class_id).sum()) * voxel_ml, rel=1e-12)
        assert row.volume_pred_ml == pytest.approx(int((pred == row.class_id).sum()) * voxel_ml, rel=1e-12)
        assert row.abs_volume_diff_ml == pytest.approx(abs(row.volume_pred_ml - row.volume_ref_ml), abs=1e-12)
        assert row.rel_volume_diff == pytest.approx(
            (row.volume_pred_ml - row.volume_ref_ml) / row.volume_ref_ml
        )
    # files
    with (out / "metrics.csv").open() as fh:
        reader = csv.reader(fh)
        assert tuple(next(reader)) == CSV_COLUMNS
        assert len(list(reader)) == 6
    settings = json.loads((out / "evaluation.json").read_text())
    assert settings["labels"] == {"1": "head", "2": "tail"}
    assert settings["nsd_tolerance_mm"] == 2.0 and settings["volume_unit"] == "ml"
    back = load_evaluation(out)
    assert back.rows == result.rows
    assert back.labels == {1: "head", 2: "tail"}
    # summary statistics per class and overall, against numpy on the rows
    summary = json.loads((out / "summary.json").read_text())
    for key, subset in (("1", result.rows[0::2]), ("2", result.rows[1::2]), (None, result.rows)):
        for metric in ("dice", "hd95", "nsd", "rel_volume_diff"):
            values = np.array([getattr(r, metric) for r in subset])
            stats = (summary["overall"] if key is None else summary["classes"][key])["metrics"][metric]
            assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert stats["median"] == pytest.approx(np.median(values), rel=1e-12)
            assert stats["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
            assert (stats["min"], stats["max"]) == (values.min(), values.max())
            assert stats["n"] == len(subset)
    assert summary["classes"]["1"]["name"] == "head"


def test_empty_masks_follow_the_convention_in_rows_csv_and_summary(tmp_path):
    pred, ref = label_pair(2)
    write_labels(tmp_path / "ref" / "full.nii.gz", ref)
    write_labels(tmp_path / "pred" / "full.nii.gz", pred)
    write_labels(tmp_path / "ref" / "missed.nii.gz", ref)
    write_labels(tmp_path / "pred" / "missed.nii.gz", np.where(pred == 2, 0, pred).astype(np.uint8))
    # label 3 is in neither file: both empty
    result = evaluate(tmp_path / "pred", tmp_path / "ref", labels="1,2,3", output=tmp_path / "out")
    rows = {(r.case, r.class_id): r for r in result.rows}
    missed = rows[("missed", 2)]
    assert (missed.dice, missed.iou, missed.nsd, missed.rel_volume_diff) == (0.0, 0.0, 0.0, -1.0)
    assert math.isinf(missed.hd95) and math.isinf(missed.assd)
    both = rows[("full", 3)]
    assert (both.dice, both.iou, both.hd95, both.assd, both.nsd, both.rel_volume_diff) == (1, 1, 0, 0, 1, 0)
    text = (tmp_path / "out" / "metrics.csv").read_text()
    line = next(line for line in text.splitlines() if line.startswith("missed,2,"))
    assert line.split(",")[5:7] == ["inf", "inf"]
    hd = result.summary["classes"]["2"]["metrics"]["hd95"]
    assert hd["n"] == 2 and hd["n_nonfinite"] == 1 and hd["mean"] == rows[("full", 2)].hd95
    assert result.summary["classes"]["2"]["n_pred_empty"] == 1
    assert result.summary["classes"]["3"]["n_both_empty"] == 2
    assert "(1 inf)" in result.to_markdown()
    assert "2 case/class pairs are empty in both prediction and reference" in result.to_markdown()
    reloaded = load_evaluation(tmp_path / "out")
    assert math.isinf(next(r for r in reloaded.rows if r.case == "missed" and r.class_id == 2).hd95)


def test_default_labels_are_those_of_the_references(tmp_path):
    pred, ref = label_pair(3)
    pred[0, 0, 0] = 7  # a label only the prediction has is not evaluated by default
    write_labels(tmp_path / "ref" / "c.nii.gz", ref)
    write_labels(tmp_path / "pred" / "c.nii.gz", pred)
    result = evaluate(tmp_path / "pred", tmp_path / "ref")
    assert result.labels == {1: "label_1", 2: "label_2"}
    assert {r.class_id for r in result.rows} == {1, 2}


def test_label_specifications(tmp_path):
    assert parse_labels("1:liver, 2:spleen") == {1: "liver", 2: "spleen"}
    assert parse_labels("2,1,0") == {1: "label_1", 2: "label_2"}
    assert parse_labels(None) is None
    plain = tmp_path / "labels.json"
    plain.write_text(json.dumps({"1": "liver", "3": "kidney"}))
    assert parse_labels(str(plain)) == {1: "liver", 3: "kidney"}
    msd = tmp_path / "dataset.json"
    msd.write_text(
        json.dumps({"name": "x", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}})
    )
    assert parse_labels(msd) == {1: "Anterior", 2: "Posterior"}
    nnunet = tmp_path / "nnunet.json"
    nnunet.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}}))
    assert parse_labels(nnunet) == {1: "liver", 2: "tumour"}
    with pytest.raises(ConfigError, match="not an integer"):
        parse_labels("liver")
    with pytest.raises(ConfigError, match="no foreground label"):
        parse_labels("0:background")
    with pytest.raises(InputNotFoundError):
        parse_labels(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read labels"):
        parse_labels(str(tmp_path / "bad.json"))


def _flip_k(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels in the same world positions, stored with the k axis reversed."""
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, array.shape[2] - 1
    return array[:, :, ::-1].copy(), affine @ flip


def test_prediction_on_another_grid_is_refused_then_resampled(tmp_path):
    pred, ref = label_pair(4)
    write_labels(tmp_path / "ref" / "p.nii.gz", ref)
    write_labels(tmp_path / "pred_ok" / "p.nii.gz", pred)
    flipped, flipped_affine = _flip_k(pred, AFFINE)
    write_labels(tmp_path / "pred_flipped" / "p.nii.gz", flipped, flipped_affine)
    with pytest.raises(GeometryMismatchError) as info:
        evaluate(tmp_path / "pred_flipped", tmp_path / "ref")
    message = str(info.value)
    assert (
        str(tmp_path / "pred_flipped" / "p.nii.gz") in message
        and str(tmp_path / "ref" / "p.nii.gz") in message
    )
    assert "--resample-pred" in message
    resampled = evaluate(tmp_path / "pred_flipped", tmp_path / "ref", resample_pred=True)
    direct = evaluate(tmp_path / "pred_ok", tmp_path / "ref")
    assert [r.dice for r in resampled.rows] == [r.dice for r in direct.rows]
    assert [r.hd95 for r in resampled.rows] == [r.hd95 for r in direct.rows]
    assert resampled.settings["resample_pred"] is True


def test_resampling_a_finer_prediction_recovers_it(tmp_path):
    """A prediction on a grid twice as fine along k (2.5 -> 1.25 mm), nearest-neighbour upsampled
    from the reference itself, resamples back onto the reference exactly: Dice 1, HD95 0."""
    _, ref = label_pair(5)
    fine = np.repeat(ref, 2, axis=2)
    fine_affine = AFFINE.copy()
    fine_affine[2, 2] = 1.25
    fine_affine[2, 3] = (
        AFFINE[2, 3] - 0.625
    )  # voxel centres at -30.625, -29.375, ...: pairs around each slice
    write_labels(tmp_path / "ref" / "f.nii.gz", ref)
    write_labels(tmp_path / "pred" / "f.nii.gz", fine, fine_affine)
    with pytest.raises(GeometryMismatchError, match="shape"):
        evaluate(tmp_path / "pred", tmp_path / "ref")
    result = evaluate(tmp_path / "pred", tmp_path / "ref", resample_pred=True)
    assert all(r.dice == 1.0 and r.hd95 == 0.0 for r in result.rows)


def test_2d_label_images_give_confusion_matrix_and_mean_iou(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    refs, preds = [], []
    for n in range(2):
        ref = np.zeros((40, 50), np.uint8)
        ref[5:25, 5:30] = 1
        ref[20:35, 28:45] = 2
        pred = ref.copy()
        flip = rng.random(ref.shape) < 0.08
        pred[flip] = rng.integers(0, 3, size=int(flip.sum()))
        (tmp_path / "ref").mkdir(exist_ok=True)
        (tmp_path / "pred").mkdir(exist_ok=True)
        Image.fromarray(ref).save(tmp_path / "ref" / f"img{n}.png")
        Image.fromarray(pred).save(tmp_path / "pred" / f"img{n}.png")
        refs.append(ref)
        preds.append(pred)
    result = evaluate(tmp_path / "pred", tmp_path / "ref", output=tmp_path / "out")
    assert result.settings["spatial_dims"] == 2
    assert result.settings["distance_unit"] == "px" and result.volume_unit == "px2"
    expected = np.zeros((3, 3), np.int64)
    for ref, pred in zip(refs, preds):
        for i in range(3):
            for j in range(3):
                expected[i, j] += int(((ref == i) & (pred == j)).sum())
    assert np.array_equal(result.confusion.matrix, expected)
    iou = [expected[k, k] / (expected[k].sum() + expected[:, k].sum() - expected[k, k]) for k in range(3)]
    assert result.summary["mean_iou"] == pytest.approx(np.mean(iou[1:]), rel=1e-12)
    assert result.summary["mean_iou_with_background"] == pytest.approx(np.mean(iou), rel=1e-12)
    # per-image rows use 2D surfaces with 1 px spacing
    row = result.rows[0]
    m = compute_metrics(preds[0] == 1, refs[0] == 1, (1.0, 1.0))
    assert (row.dice, row.hd95, row.nsd, row.volume_ref_ml) == (m.dice, m.hd95, m.nsd, m.size_ref)
    lines = (tmp_path / "out" / "confusion_matrix.csv").read_text().splitlines()
    assert lines[0] == "reference\\prediction,background,label_1,label_2"
    assert lines[2].split(",")[1:] == [str(v) for v in expected[1]]
    assert load_evaluation(tmp_path / "out").confusion.matrix.tolist() == expected.tolist()
    assert "Mean IoU over classes" in result.to_markdown()


def test_user_errors(tmp_path):
    pred, ref = label_pair(6)
    with pytest.raises(InputNotFoundError, match="prediction folder"):
        evaluate(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    write_labels(tmp_path / "ref" / "a.nii.gz", ref)
    with pytest.raises(NoImageDataError, match="holds no image"):
        evaluate(tmp_path / "empty", tmp_path / "ref")
    write_labels(tmp_path / "other" / "zzz.nii.gz", pred)
    with pytest.raises(NoImageDataError, match="no case"):
        evaluate(tmp_path / "other", tmp_path / "ref")
    write_labels(tmp_path / "dup" / "a.nii.gz", pred)
    write_labels(tmp_path / "dup" / "a_0000.nrrd", pred)
    with pytest.raises(MedsegError, match="two files for case 'a'"):
        evaluate(tmp_path / "dup", tmp_path / "ref")
    write_labels(tmp_path / "prob" / "a.nii.gz", (pred > 0) * np.float32(0.4))
    with pytest.raises(UnsupportedFormatError, match="probability"):
        evaluate(tmp_path / "prob", tmp_path / "ref")
    write_labels(tmp_path / "four_d" / "a.nii.gz", np.stack([pred, pred], axis=-1))
    with pytest.raises(UnsupportedFormatError, match="2 volumes"):
        evaluate(tmp_path / "four_d", tmp_path / "ref")
    with pytest.raises(ValueError, match="nsd_tolerance"):
        evaluate(tmp_path / "ref", tmp_path / "ref", nsd_tolerance=-1)


def test_float_labels_with_whole_values_are_accepted(tmp_path):
    pred, ref = label_pair(7)
    write_labels(tmp_path / "ref" / "a.nii.gz", ref.astype(np.float32))
    write_labels(tmp_path / "pred" / "a.nii.gz", pred.astype(np.float32))
    result = evaluate(tmp_path / "pred", tmp_path / "ref")
    m = compute_metrics(pred == 1, ref == 1, read_volume(tmp_path / "ref" / "a.nii.gz").spacing)
    assert (result.rows[0].dice, result.rows[0].hd95) == (m.dice, m.hd95)


def test_single_slice_volume_is_measured_in_2d(tmp_path):
    """A 3D file with one slice is measured on its plane (in 3D every voxel would be surface)."""
    pred, ref = label_pair(8, shape=(30, 26))
    write_labels(tmp_path / "ref" / "s.nii.gz", ref[:, :, None])
    write_labels(tmp_path / "pred" / "s.nii.gz", pred[:, :, None])
    result = evaluate(tmp_path / "pred", tmp_path / "ref")
    spacing = read_volume(tmp_path / "ref" / "s.nii.gz").spacing[:2]
    m = compute_metrics(pred == 1, ref == 1, spacing)
    assert result.rows[0].hd95 == m.hd95 and result.settings["spatial_dims"] == 2
    assert result.volume_unit == "mm2" and result.rows[0].volume_ref_ml == pytest.approx(m.size_ref)
    # measured in 3D, every voxel of a one-slice mask would be surface: distances would differ
    in_3d = compute_metrics(pred[..., None] == 1, ref[..., None] == 1, (*spacing, 2.5))
    assert result.rows[0].assd == m.assd != in_3d.assd


@pytest.mark.shared
def test_real_png_label_images(shared_datasets, tmp_path):
    """ISBI 2012 membrane labels ({0, 255} PNG): predictions are eroded copies."""
    from PIL import Image
    from scipy import ndimage

    from tests.conftest import shared_path

    labels = shared_path(shared_datasets, "isbi2012_em", "train", "label")
    (tmp_path / "pred").mkdir()
    refs = {}
    for n in range(2):
        ref = np.asarray(Image.open(labels / f"{n}.png"))
        refs[n] = ref
        eroded = ndimage.binary_erosion(ref == 255, iterations=1)
        Image.fromarray(np.where(eroded, 255, 0).astype(np.uint8)).save(tmp_path / "pred" / f"{n}.png")
    import shutil

    (tmp_path / "ref").mkdir()
    for n in range(2):
        shutil.copy(labels / f"{n}.png", tmp_path / "ref" / f"{n}.png")
    result = evaluate(tmp_path / "pred", tmp_path / "ref", labels="255:cell")
    assert result.cases == ["0", "1"]
    for row in result.rows:
        ref = refs[int(row.case)] == 255
        eroded = ndimage.binary_erosion(ref, iterations=1)
        assert row.dice == pytest.approx(2 * eroded.sum() / (eroded.sum() + ref.sum()), rel=1e-12)
        assert row.hd95 > 0
    assert int(result.confusion.matrix.sum()) == sum(r.size for r in refs.values())
