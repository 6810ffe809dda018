"""Fold ensembles: the probabilities are the mean of the folds' (each computed alone with
Predictor), the labels their arg-max (or painted regions), on the scan's own grid."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg.cli.main import main
from medseg.config.load import config_from_dict
from medseg.config.schema import RegionConfig
from medseg.data.regions import paint
from medseg.errors import ConfigError, InputNotFoundError, MedsegError
from medseg.inference import PostprocessOptions, Predictor, postprocess
from medseg.inference.ensemble import EnsemblePredictor, load_predictor
from medseg.training.checkpoint import save_inference_checkpoint
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume
from tests.fixtures.models import Threshold

AFFINE = np.diag([-1.1, 0.9, 1.6, 1.0])


def _scan(seed: int = 3, shape=(22, 18, 12)) -> Volume:
    rng = np.random.default_rng(seed)
    g = np.indices(shape).astype(np.float32)
    data = np.sin(g[0] / 3) + np.cos(g[1] / 4) + rng.normal(0, 0.3, shape)
    return Volume(data.astype(np.float32), AFFINE.copy())


def make_fold_run(run: Path, k: int = 3, spacings=(None, None, (1.5, 1.5, 2.0))) -> Path:
    """A cross-validation run of k untrained 3-class U-Nets (other seeds; the last fold another plan)."""
    from medseg.models import build_model

    labels = {0: "background", 1: "a", 2: "b"}
    splits = {}
    for f in range(k):
        torch.manual_seed(100 + f)
        model = build_model("unet", 3, 1, 3, features=[4, 8])
        plan = Plan.from_dataset([(_scan(f), None)], labels, target_spacing=spacings[f])
        cfg = config_from_dict(
            {
                "name": "tiny_folds",
                "data": {"manifest": "unused.json", "folds": k},
                "model": {"name": "unet", "spatial_dims": 3, "params": {"features": [4, 8]}},
                "training": {"patch_size": [16, 16, 16], "epochs": 1},
                "inference": {"overlap": 0.25},
            }
        )
        save_inference_checkpoint(run / f"fold_{f}" / "checkpoints" / "best.pt", model, plan, cfg)
        splits[str(f)] = {"train": [], "val": [f"c{f}"]}
    record = {"format": "medseg-folds/1", "k": k, "folds": list(range(k)), "seed": 1, "splits": splits}
    (run / "folds.json").write_text(json.dumps(record))
    return run


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory) -> Path:
    return make_fold_run(tmp_path_factory.mktemp("cv") / "run")


def _fold_probabilities(run: Path, folds, scan: Volume) -> list[np.ndarray]:
    return [
        Predictor.from_run(run / f"fold_{f}", device="cpu")
        .predict(scan, probabilities=True)
        .probabilities.array
        for f in folds
    ]


def test_ensemble_probabilities_are_the_mean_of_the_folds(fold_run):
    scan = _scan(7)
    each = _fold_probabilities(fold_run, [0, 1, 2], scan)
    assert not np.allclose(each[0], each[1], atol=1e-3)  # the folds really differ
    mean = np.mean(each, axis=0)
    ens = EnsemblePredictor.from_run(fold_run, device="cpu")
    assert ens.folds == [0, 1, 2]
    pred = ens.predict(scan, probabilities=True)
    assert pred.probabilities.array.shape == (*scan.shape, 3)
    np.testing.assert_allclose(pred.probabilities.array, mean, atol=1e-5)
    np.testing.assert_array_equal(pred.labels.array, mean.argmax(-1))
    assert pred.labels.shape == scan.shape and np.allclose(pred.labels.affine, scan.affine)
    assert pred.info["folds"] == [0, 1, 2]


def test_a_subset_of_folds(fold_run):
    scan = _scan(8)
    mean = np.mean(_fold_probabilities(fold_run, [0, 2], scan), axis=0)
    ens = load_predictor(fold_run, "0,2", device="cpu")
    assert isinstance(ens, EnsemblePredictor) and ens.folds == [0, 2]
    np.testing.assert_allclose(ens.predict(scan, probabilities=True).probabilities.array, mean, atol=1e-5)
    with pytest.raises(ConfigError):
        load_predictor(fold_run, "0,5")
    with pytest.raises(ConfigError):  # --folds for a single model
        load_predictor(fold_run / "fold_0", "0")
    with pytest.raises(InputNotFoundError):  # Predictor.from_run on the whole run says what it is
        Predictor.from_run(fold_run)


def test_missing_fold_is_refused(tmp_path):
    run = make_fold_run(tmp_path / "run", k=2, spacings=(None, None))
    (run / "fold_1" / "checkpoints" / "best.pt").unlink()
    with pytest.raises(MedsegError, match=r"fold\(s\) \[1\]"):
        EnsemblePredictor.from_run(run, device="cpu")
    assert EnsemblePredictor.from_run(run, "0", device="cpu").folds == [0]


def test_region_models_average_sigmoids(rng):
    scan = _scan(9)
    plan = Plan.from_dataset(
        [(scan, None)], {0: "bg", 1: "a", 2: "b"}, target_spacing=None, normalization="none"
    )
    regions = [
        RegionConfig(name="whole", labels=[1, 2], value=1),
        RegionConfig(name="core", labels=[2], value=2),
    ]
    preds = [Predictor(Threshold(t), plan, (16, 16, 16), regions=regions) for t in (0.2, 0.9)]
    each = [p.predict(scan, probabilities=True).probabilities.array for p in preds]
    mean = np.mean(each, axis=0)
    out = EnsemblePredictor(preds).predict(scan, probabilities=True)
    np.testing.assert_allclose(out.probabilities.array, mean, atol=1e-5)
    expected = paint(np.moveaxis(mean, -1, 0) > 0.5, regions)
    np.testing.assert_array_equal(out.labels.array, expected)
    assert 0 < (out.labels.array == 2).sum() < scan.array.size  # both regions present: a real check


def test_mismatched_models_are_refused():
    scan = _scan()
    p1 = Plan.from_dataset([(scan, None)], {0: "bg", 1: "a"}, target_spacing=None)
    p2 = Plan.from_dataset([(scan, None)], {0: "bg", 1: "a", 2: "b"}, target_spacing=None)
    with pytest.raises(ConfigError, match="different labels"):
        EnsemblePredictor(
            [Predictor(Threshold(0), p1, (16, 16, 16)), Predictor(Threshold(0), p2, (16, 16, 16))]
        )


def test_cli_predict_folds_applies_the_recorded_postprocessing(fold_run, tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    scan = _scan(11)
    nib.save(nib.Nifti1Image(scan.array, scan.affine), scans / "p1.nii.gz")
    chosen = PostprocessOptions(per_class={1: PostprocessOptions(keep_largest=True)})
    (fold_run / "postprocessing.json").write_text(json.dumps({"options": chosen.to_dict()}))
    try:
        assert main(["predict", "-m", str(fold_run), "-i", str(scans), "-o", str(tmp_path / "out"),
                     "--folds", "0,1", "--device", "cpu"]) == 0  # fmt: skip
        assert main(["predict", "-m", str(fold_run), "-i", str(scans), "-o", str(tmp_path / "raw"),
                     "--folds", "0,1", "--device", "cpu", "--no-chosen-postprocessing"]) == 0  # fmt: skip
        assert main(["predict", "-m", str(fold_run), "-i", str(scans), "-o", str(tmp_path / "flag"),
                     "--folds", "0,1", "--device", "cpu", "--min-size", "30"]) == 0  # fmt: skip
    finally:
        (fold_run / "postprocessing.json").unlink()
    raw = np.asarray(nib.load(tmp_path / "raw" / "p1.nii.gz").dataobj)
    mean = np.mean(_fold_probabilities(fold_run, [0, 1], scan), axis=0)
    np.testing.assert_array_equal(raw, mean.argmax(-1))
    out = np.asarray(nib.load(tmp_path / "out" / "p1.nii.gz").dataobj)
    np.testing.assert_array_equal(out, postprocess(raw, scan.spacing, chosen))
    flag = np.asarray(nib.load(tmp_path / "flag" / "p1.nii.gz").dataobj)  # flags replace the choice
    np.testing.assert_array_equal(flag, postprocess(raw, scan.spacing, PostprocessOptions(min_size_mm3=30)))
    sidecar = json.loads((tmp_path / "out" / "p1.json").read_text())
    assert sidecar["folds"] == [0, 1] and sidecar["postprocess"]["per_class"]["1"]["keep_largest"]
    assert main(["predict", "-m", str(fold_run / "fold_0"), "-i", str(scans), "-o", str(tmp_path / "x"),
                 "--folds", "0"]) == ConfigError.exit_code  # fmt: skip
