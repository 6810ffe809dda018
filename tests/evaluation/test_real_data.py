"""``evaluate`` on real label maps, checked class by class against MONAI."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice

from medseg.evaluation import evaluate
from medseg.io import read_volume
from tests.conftest import shared_path

pytestmark = pytest.mark.shared


def _monai(pred: np.ndarray, ref: np.ndarray, spacing, tol: float) -> tuple[float, float]:
    P = torch.from_numpy(np.stack([~pred, pred]).astype(np.float32))[None]
    R = torch.from_numpy(np.stack([~ref, ref]).astype(np.float32))[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(P, R, percentile=95, spacing=spacing).item()
        nsd = compute_surface_dice(P, R, [tol], spacing=spacing).item()
    return hd, nsd


def test_totalsegmentator_fast_model_against_full_model(shared_datasets, tmp_path):
    """Two real multi-organ predictions of the same CT (--fast vs full model), 3 mm voxels."""
    root = shared_path(shared_datasets, "totalsegmentator_examples")
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    shutil.copy(root / "example_seg.nii.gz", tmp_path / "ref" / "example.nii.gz")
    shutil.copy(root / "example_seg_fast.nii.gz", tmp_path / "pred" / "example.nii.gz")
    result = evaluate(
        tmp_path / "pred", tmp_path / "ref", labels=root / "class_map_total_v2.json", nsd_tolerance=3.0
    )
    ref = read_volume(root / "example_seg.nii.gz")
    pred = read_volume(root / "example_seg_fast.nii.gz")
    present = sorted(int(v) for v in np.unique(ref.array) if v)
    assert len(present) == 41  # as SOURCE.txt states
    rows = {r.class_name: r for r in result.rows if r.class_id in present}
    for name in ("liver", "spleen", "kidney_left", "aorta", "vertebrae_L1"):
        row = rows[name]
        r, p = ref.array == row.class_id, pred.array == row.class_id
        hd, nsd = _monai(p, r, ref.spacing, 3.0)
        assert row.dice == pytest.approx(2 * (r & p).sum() / (r.sum() + p.sum()), rel=1e-12)
        assert row.hd95 == pytest.approx(hd, rel=1e-6)
        assert row.nsd == pytest.approx(nsd, rel=1e-6)
        assert row.volume_ref_ml == pytest.approx(r.sum() * 27.0 / 1000, rel=1e-6)
    assert rows["liver"].dice > 0.9  # two good models agree on the liver


def test_hippocampus_labels_from_dataset_json(shared_datasets, tmp_path):
    root = shared_path(shared_datasets, "msd_hippocampus")
    (tmp_path / "pred").mkdir()
    for name in ("hippocampus_001.nii.gz", "hippocampus_003.nii.gz"):
        label = read_volume(root / "labelsTr" / name)
        from medseg.io import write_volume

        write_volume(label.with_array(np.roll(label.array, 1, axis=1)), tmp_path / "pred" / name)
    result = evaluate(tmp_path / "pred", root / "labelsTr", labels=root / "dataset.json")
    assert result.labels == {1: "Anterior", 2: "Posterior"}
    assert result.cases == ["hippocampus_001", "hippocampus_003"]
    assert len(result.unmatched_ref) == 206  # every other labelled case is listed, not silently dropped
    assert all(0.5 < r.dice < 1.0 and r.hd95 >= 1.0 for r in result.rows)
