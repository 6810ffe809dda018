"""Post-processing chosen on a single run's validation cases: chosen exactly when it helps them,
recorded in RUN/postprocessing.json, read back by the run's predictor and applied by default."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from medseg.config.load import config_from_dict
from medseg.errors import MedsegError
from medseg.inference.choice_record import POSTPROCESSING_FILE
from medseg.inference.postprocess import PostprocessOptions
from medseg.inference.predictor import Predictor
from medseg.io import read_volume
from medseg.training.trainer import Trainer
from medseg.training.validation_choice import choose_after_training, choose_validation_postprocessing
from tests.fixtures.synthetic_dataset import pipeline_dict, write_3d_dataset

VAL = ["case3", "case4", "case5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    manifest = write_3d_dataset(tmp_path_factory.mktemp("vcdata"), n=6, shape=(20, 20, 14))
    record = json.loads(manifest.read_text())
    for case in record["cases"]:
        case["split"] = "val" if case["id"] in VAL else "train"
    manifest.write_text(json.dumps(record))
    return manifest


def _train(data: Path, run: Path, choose: bool) -> Path:
    t = {"epochs": 1, "iterations_per_epoch": 2, "patch_size": [16, 16, 16], "choose_postprocessing": choose}
    d = pipeline_dict(data, run.parent / "cache", "unet", 3, {"features": [4, 8]}, **t)
    d["inference"] = {"backend": "torch"}
    Trainer(config_from_dict(d), run, device="cpu").fit()
    return run


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    return _train(data, tmp_path_factory.mktemp("vc") / "run", choose=True)


def test_training_records_the_choice_on_its_validation_cases(run, data, tmp_path):
    record = json.loads((run / POSTPROCESSING_FILE).read_text())
    val = json.loads((run / "splits.json").read_text())["val"]
    assert record["chosen_on"] == "validation cases" and record["n_cases"] == len(val) == 3
    assert set(record["classes"]) == {"1", "2"}  # both classes were decided
    plain = _train(data, tmp_path / "plain", choose=False)
    assert not (plain / POSTPROCESSING_FILE).exists()


def _noisy_reference(data: Path, spurious: bool):
    """A stand-in prediction of each validation case: its reference, plus a far blob of class 1
    (the case is recognised by its image)."""
    refs = {
        read_volume(data.parent / f"{c}.nii.gz").array.tobytes(): np.asarray(
            nib.load(str(data.parent / f"{c}_seg.nii.gz")).dataobj
        ).astype(np.uint8)
        for c in VAL
    }

    def predict(self, image, probabilities=False, postprocessing=None):
        assert postprocessing is not None and not postprocessing.active  # raw predictions are compared
        out = refs[image.array.tobytes()].copy()
        if spurious:
            assert not out[:3, :3, :3].any()
            out[:3, :3, :3] = 1
        return SimpleNamespace(labels=SimpleNamespace(array=out))

    return predict


def test_keep_largest_is_chosen_exactly_when_it_helps_and_predict_applies_it(run, data, monkeypatch):
    monkeypatch.setattr(Predictor, "predict", _noisy_reference(data, spurious=True))
    selection = choose_validation_postprocessing(run, device="cpu")
    assert selection.classes[1].chosen.keep_largest and selection.classes[1].dice_after == 1.0
    assert selection.classes[1].dice_before < 1.0
    assert not selection.classes[2].chosen.active  # class 2 was exact: nothing to gain
    monkeypatch.undo()
    predictor = Predictor.from_run(run, device="cpu")
    assert predictor.recorded_postprocessing == selection.options
    assert predictor.recorded_postprocessing.for_class(1).keep_largest
    scan = read_volume(data.parent / "case4.nii.gz")
    assert predictor.predict(scan).info["postprocess"] == selection.options.to_dict()  # by default
    explicit = predictor.predict(scan, postprocessing=PostprocessOptions())  # the caller's options win
    assert explicit.info["postprocess"] == PostprocessOptions().to_dict()
    # exact predictions: nothing helps, nothing is applied, and the earlier choice is replaced
    monkeypatch.setattr(Predictor, "predict", _noisy_reference(data, spurious=False))
    clean = choose_validation_postprocessing(run, device="cpu")
    assert not clean.options.active
    monkeypatch.undo()
    assert not Predictor.from_run(run, device="cpu").recorded_postprocessing.active


def test_too_few_validation_cases_choose_nothing_and_a_failure_keeps_the_run(run, tmp_path, caplog):
    """Under 3 validation cases nothing is chosen (and an earlier choice goes); a choice that fails
    after training leaves the trained run, without a stale choice, and says so."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    splits = json.loads((copy / "splits.json").read_text())
    (copy / "splits.json").write_text(json.dumps({**splits, "val": splits["val"][:2]}))
    assert (copy / POSTPROCESSING_FILE).is_file()
    assert choose_validation_postprocessing(copy, device="cpu") is None
    assert not (copy / POSTPROCESSING_FILE).exists()
    (copy / "splits.json").write_text(json.dumps({**splits, "val": ["nobody", "case4", "case5"]}))
    with pytest.raises(MedsegError, match="nobody"):
        choose_validation_postprocessing(copy, device="cpu")
    (copy / POSTPROCESSING_FILE).write_text("{}")
    choose_after_training(copy, 0, None, "cpu")  # a fold of a cross-validation run: chosen out-of-fold
    assert (copy / POSTPROCESSING_FILE).read_text() == "{}"
    choose_after_training(copy, None, None, "cpu")  # the trainer's hook, on a run whose choice fails
    assert "post-processing not chosen" in caplog.text and not (copy / POSTPROCESSING_FILE).exists()


def test_a_choice_is_used_only_with_the_checkpoint_it_was_made_for(run):
    record = json.loads((run / POSTPROCESSING_FILE).read_text())
    assert record["checkpoint"] == "best"
    from medseg.inference.choice_record import recorded_postprocessing

    assert recorded_postprocessing(run, "best") is not None and recorded_postprocessing(run) is not None
    assert recorded_postprocessing(run, "last") is None
    assert Predictor.from_run(run, device="cpu", checkpoint="last").recorded_postprocessing is None
    ckpt = run / "checkpoints" / "best.pt"
    assert Predictor.from_run(ckpt, device="cpu").recorded_postprocessing is not None
