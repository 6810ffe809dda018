"""benchmarks/label_coverage.py: errors placed against the slices the reference labels."""

from __future__ import annotations

import numpy as np

from benchmarks.label_coverage import coverage


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
