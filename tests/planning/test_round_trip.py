"""The label round trip (resample to the target spacing and back, as preprocessing and prediction
do): exact values on grids where nearest-neighbour sampling can be worked out by hand."""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from medseg.planning.round_trip import MAX_ROUND_TRIP_LOSS, label_round_trip, round_trip_dice


def _square(lo: int, hi: int) -> np.ndarray:
    lab = np.zeros((10, 10, 4), dtype=np.uint8)
    lab[lo:hi, lo:hi, :] = 1
    return lab


def test_round_trip_by_hand():
    """Halving x and y (edge-aligned nearest): new voxel i reads old 2i + 1, and old voxel i reads
    new i // 2, so old i comes back as old 2 (i // 2) + 1. A square on [2, 6) returns exactly; one on
    [1, 5) comes back on [0, 4): 3 x 3 of 4 x 4 overlap, Dice 18 / 32."""
    assert round_trip_dice(_square(2, 6), (1.0, 1.0, 1.0), (2.0, 2.0, None)) == 1.0
    assert round_trip_dice(_square(1, 5), (1.0, 1.0, 1.0), (2.0, 2.0, None)) == pytest.approx(18 / 32)
    assert round_trip_dice(_square(1, 5), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == 1.0  # same grid
    assert round_trip_dice(np.zeros((4, 4, 4), np.uint8), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)) == 1.0
    two = _square(2, 6)
    two[1:5, 7:9, :] = 2  # class 2 on [1, 5) x [7, 9) comes back on [0, 4) x [6, 8)
    a, b = two == 2, np.zeros_like(two, dtype=bool)
    b[0:4, 6:8, :] = True
    expected = np.mean([1.0, 2 * (a & b).sum() / (a.sum() + b.sum())])
    assert round_trip_dice(two, (1.0, 1.0, 1.0), (2.0, 2.0, None)) == pytest.approx(expected)


def test_label_round_trip_over_a_manifest(tmp_path):
    """Training cases are read from disk in RAS (an LPS file's x axis is flipped first), sampled
    evenly, and summarised as mean and lowest Dice; held-out (``split: test``) labels are never read."""
    cases = []
    for i, (lo, hi) in enumerate([(2, 6), (1, 5), (2, 6), (1, 5)]):
        path = tmp_path / f"c{i}.nii.gz"
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) if i == 3 else np.eye(4)
        lab = _square(lo, hi)
        if i == 3:  # LPS on disk: the same RAS square as case 1
            lab = lab[::-1, ::-1, :].copy()
        nib.save(nib.Nifti1Image(lab, affine), str(path))
        cases.append(SimpleNamespace(id=f"c{i}", label=str(path), images=[str(path)], split="train"))
    held_out = tmp_path / "held_out.nii.gz"  # unreadable: reading it would fail the test
    held_out.write_bytes(b"not a nifti")
    cases.append(SimpleNamespace(id="t0", label=str(held_out), images=[str(held_out)], split="test"))
    manifest = SimpleNamespace(cases=cases, label_map=None)
    out = label_round_trip(manifest, [2.0, 2.0, None])
    assert out == {
        "dice_mean": pytest.approx((1 + 18 / 32) / 2),
        "dice_min": pytest.approx(18 / 32),
        "cases": 4,
    }
    assert label_round_trip(manifest, [2.0, 2.0, None], max_cases=2)["cases"] == 2  # cases 0 and 2
    assert label_round_trip(manifest, [2.0, 2.0, None], max_cases=2)["dice_mean"] == 1.0
    assert 0 < MAX_ROUND_TRIP_LOSS < 0.05
