"""benchmarks/label_coverage.py: errors placed against the slices the reference labels."""

from __future__ import annotations

import numpy as np

from benchmarks.label_coverage import coverage, validation_curve


def test_predictions_on_unlabelled_slices_are_counted_apart():
    ref = np.zeros((8, 8, 6), bool)
    ref[2:6, 2:6, 2:5] = True  # labelled on slices 2-4
    pred = np.zeros_like(ref)
    pred[2:6, 2:6, 0:5] = True  # the same square, also on slices 0-1
    c = coverage(pred, ref, axis=2)
    assert c["labelled_slices"] == [2, 4]
    assert c["pred_voxels_unlabelled_slices"] == 2 * 16
    assert c["dice"] == 2 * 48 / (80 + 48)
    assert c["dice_labelled_slices"] == 1.0
    assert (c["recall"], c["precision"]) == (1.0, 48 / 80)
    # along another axis every slice of the square is labelled: nothing is set apart
    assert coverage(pred, ref, axis=0)["pred_voxels_unlabelled_slices"] == 0


def test_empty_reference_has_no_labelled_slices():
    ref = np.zeros((4, 4, 3), bool)
    pred = ref.copy()
    pred[0, 0, 1] = True
    c = coverage(pred, ref, axis=2)
    assert c["dice"] == 0.0 and c["pred_voxels_unlabelled_slices"] == 1
    assert c["dice_labelled_slices"] is None and c["recall"] is None and c["labelled_slices"] is None


def test_validation_curve_reports_where_it_neared_its_best_and_what_followed(tmp_path):
    rows = ["epoch,step,val_dice_mean", "0,10,", "1,20,0.70", "2,30,0.805", "3,40,0.75", "4,50,nan"]
    (tmp_path / "metrics.csv").write_text("\n".join([*rows, "5,60,0.81", "6,70,0.79"]) + "\n")
    v = validation_curve(tmp_path)
    assert (v["best"], v["best_step"], v["near_step"], v["last"], v["steps"]) == (0.81, 60, 30, 0.79, 70)
    assert v["after_range"] == [0.75, 0.81]  # the NaN validation is left out
    assert validation_curve(tmp_path / "missing") is None
