"""benchmarks/fold_ensemble.py: out-of-fold Dice, fold summaries and the chance of a target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.fold_ensemble import chance_of_target, fold_summaries, oof_dice


def test_chance_of_target_matches_the_exact_bootstrap_share():
    values = [0.9, 0.6, 0.3]
    # every ordered draw of 2 with replacement is equally likely: 9 pairs, 3 with a mean >= 0.74
    # (0.9 + 0.9, and 0.9 + 0.6 both ways)
    assert chance_of_target(values, 2, 0.74, draws=200_000) == pytest.approx(3 / 9, abs=0.01)
    assert chance_of_target(values, 2, 0.95) == 0.0
    assert chance_of_target([0.9, 0.91], 6, 0.85) == 1.0
    with pytest.raises(ValueError, match="test sets of 0 cases"):
        chance_of_target(values, 0, 0.8)


def test_oof_dice_reads_the_asked_class(tmp_path: Path):
    from medseg.evaluation.results import CSV_COLUMNS

    rows = [("a", 1, "tumour", 0.5), ("a", 2, "oedema", 0.9), ("b", 1, "tumour", 0.25)]
    blank = "," * (len(CSV_COLUMNS) - 4)  # the other metrics and paths left empty
    (tmp_path / "metrics.csv").write_text(
        ",".join(CSV_COLUMNS) + "\n" + "".join(f"{c},{k},{n},{d}{blank}\n" for c, k, n, d in rows)
    )
    assert oof_dice(tmp_path, 1) == {"a": 0.5, "b": 0.25}
    assert oof_dice(tmp_path, 2) == {"a": 0.9}


def test_fold_summaries_read_steps_and_best_validation(tmp_path: Path):
    for k, rows in enumerate(["100,0.4\n200,0.7\n300,0.6\n", "50,\n"]):
        (tmp_path / f"fold_{k}").mkdir()
        (tmp_path / f"fold_{k}" / "metrics.csv").write_text("step,val_dice_mean\n" + rows)
    assert fold_summaries(tmp_path) == [
        {"fold": "fold_0", "steps": 300, "best_val_dice": 0.7},
        {"fold": "fold_1", "steps": 50, "best_val_dice": None},
    ]


def test_oof_dice_after_the_chosen_postprocessing(tmp_path: Path):
    from benchmarks.fold_ensemble import oof_dice_postprocessed
    from medseg.io import write_volume
    from medseg.volume import Volume

    ref = np.zeros((12, 12, 6), np.uint8)
    ref[2:7, 2:7, 1:4] = 1  # 75 voxels
    pred = ref.copy()
    pred[10:12, 10:12, 4:6] = 1  # a stray 8-voxel component
    for folder, array in (("crossval/oof", pred), ("references", ref)):
        (tmp_path / folder).mkdir(parents=True)
        write_volume(Volume(array, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / folder / "a.nii.gz")
    keep = {"per_class": {"1": {"keep_largest": True}}}
    assert oof_dice_postprocessed(tmp_path, None, 1) == {"a": pytest.approx(2 * 75 / (83 + 75))}
    assert oof_dice_postprocessed(tmp_path, keep, 1) == {"a": 1.0}
