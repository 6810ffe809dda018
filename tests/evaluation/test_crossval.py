"""``medseg crossval``: Dice per fold and pooled over hand-made out-of-fold predictions equal a
direct computation; the post-processing record agrees with it; the report and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import main
from medseg.errors import InputNotFoundError
from medseg.evaluation.crossval import cross_validate
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
SHAPE = (16, 16, 6)
LABELS = {0: "background", 1: "liver", 2: "lesion"}


def _dice(p: np.ndarray, r: np.ndarray) -> float:
    s = p.sum() + r.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(p, r).sum() / s


def _case(rng) -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros(SHAPE, np.uint8)
    a = rng.integers(1, 5, 3)
    ref[a[0] : a[0] + 8, a[1] : a[1] + 8, 1:5] = 1
    ref[a[0] + 2 : a[0] + 5, a[1] + 2 : a[1] + 5, 2:4] = 2
    pred = np.where(rng.random(SHAPE) < 0.15, rng.integers(0, 3, SHAPE), ref).astype(np.uint8)
    pred[14:16, 14:16, 0:2] = 1  # a spurious component of class 1 in every case
    return pred, ref


def make_oof_run(run: Path, k: int = 3, per_fold: int = 2, seed: int = 0) -> dict[str, tuple]:
    """A cross-validation run with out-of-fold predictions only (what train_folds leaves)."""
    rng = np.random.default_rng(seed)
    plan = Plan.from_dataset(
        [(Volume(np.zeros(SHAPE, np.float32), AFFINE), None)], LABELS, target_spacing=None
    )
    splits, cases = {}, {}
    (run / "references").mkdir(parents=True)
    for f in range(k):
        folder = run / f"fold_{f}"
        (folder / "validation").mkdir(parents=True)
        (folder / "plan.json").write_text(plan.to_json())
        (folder / "config.yaml").write_text("name: hand_made\n")
        ids = [f"f{f}c{i}" for i in range(per_fold)]
        for cid in ids:
            pred, ref = _case(rng)
            nib.save(nib.Nifti1Image(pred, AFFINE), folder / "validation" / f"{cid}.nii.gz")
            nib.save(nib.Nifti1Image(ref, AFFINE), run / "references" / f"{cid}.nii.gz")
            cases[cid] = (f, pred, ref)
        (folder / "validation" / "oof.json").write_text(json.dumps({"fold": f, "cases": ids}))
        splits[str(f)] = {"train": [], "val": ids}
    record = {"format": "medseg-folds/1", "k": k, "folds": list(range(k)), "seed": 1, "splits": splits}
    (run / "folds.json").write_text(json.dumps(record))
    (run / "config.yaml").write_text("name: hand_made\n")
    return cases


def test_per_fold_and_pooled_dice_equal_a_direct_computation(tmp_path):
    run = tmp_path / "run"
    cases = make_oof_run(run)
    cv = cross_validate(run, report=True, viewer=False)
    direct = {
        cid: {LABELS[c]: _dice(pred == c, ref == c) for c in (1, 2)} for cid, (_, pred, ref) in cases.items()
    }
    for f in range(3):
        ids = [cid for cid, (fold, _, _) in cases.items() if fold == f]
        for name in ("liver", "lesion"):
            assert cv.per_fold[f]["dice"][name] == pytest.approx(np.mean([direct[c][name] for c in ids]))
        assert cv.per_fold[f]["mean"] == pytest.approx(np.mean(list(cv.per_fold[f]["dice"].values())))
        assert cv.per_fold[f]["n_cases"] == 2
    for name in ("liver", "lesion"):
        assert cv.pooled["dice"][name] == pytest.approx(np.mean([d[name] for d in direct.values()]))
    # the post-processing record starts from the same out-of-fold Dice, and fixes the spurious blob
    pp = json.loads((run / "postprocessing.json").read_text())
    assert pp["classes"]["1"]["dice_before"] == pytest.approx(cv.pooled["dice"]["liver"], abs=1e-6)
    assert (
        pp["classes"]["1"]["applied"] and pp["classes"]["1"]["dice_after"] > pp["classes"]["1"]["dice_before"]
    )
    assert pp["folds"] == [0, 1, 2] and pp["n_cases"] == 6
    saved = json.loads((run / "crossval" / "crossval.json").read_text())
    assert saved["pooled"]["dice"] == pytest.approx(cv.pooled["dice"]) and saved["folds_missing"] == []
    html = (run / "crossval" / "report.html").read_text()
    assert "Cross-validation (3 folds)" in html and "Post-processing chosen out-of-fold" in html
    assert "pooled out-of-fold" in html and (run / "crossval" / "evaluation" / "metrics.csv").is_file()
    assert sorted(p.name for p in (run / "crossval" / "oof").iterdir()) == sorted(
        f"{c}.nii.gz" for c in cases
    )


def test_missing_fold_and_cli(tmp_path, capsys):
    run = tmp_path / "run"
    make_oof_run(run, k=2, per_fold=2, seed=1)
    (run / "fold_1" / "validation" / "oof.json").unlink()  # fold 1 never finished
    for p in (run / "fold_1" / "validation").glob("*.nii.gz"):
        (run / "references" / p.name).unlink()
    assert main(["crossval", str(run), "--output", str(tmp_path / "cv"), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "pooled" in out and "folds without out-of-fold predictions: [1]" in out
    saved = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert saved["folds_evaluated"] == [0] and saved["folds_missing"] == [1]
    assert saved["pooled"]["dice"] == pytest.approx(saved["per_fold"]["0"]["dice"])
    assert not (tmp_path / "cv" / "report.html").exists()
    assert main(["crossval", str(tmp_path)]) == InputNotFoundError.exit_code
    with pytest.raises(InputNotFoundError, match="not a cross-validation run"):
        cross_validate(tmp_path)
