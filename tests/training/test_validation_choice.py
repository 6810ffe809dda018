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
from medseg.inference.choice_record import POSTPROCESSING_FILE
from medseg.inference.postprocess import PostprocessOptions
from medseg.inference.predictor import Predictor
from medseg.io import read_volume
from medseg.training.trainer import Trainer
from medseg.training.validation_choice import choose_validation_postprocessing
from tests.fixtures.synthetic_dataset import pipeline_dict, write_3d_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_3d_dataset(tmp_path_factory.mktemp("vcdata"), n=4, shape=(20, 20, 14))


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
    assert record["chosen_on"] == "validation cases" and record["n_cases"] == len(val) == 1
    assert set(record["classes"]) == {"1", "2"}  # both classes were decided
    plain = _train(data, tmp_path / "plain", choose=False)
    assert not (plain / POSTPROCESSING_FILE).exists()


def _noisy_reference(data: Path, spurious: bool):
    """A stand-in prediction of the validation case (case3): its reference, plus a far blob of class 1."""
    ref = np.asarray(nib.load(str(data.parent / "case3_seg.nii.gz")).dataobj).astype(np.uint8)

    def predict(self, image, probabilities=False, postprocessing=None):
        out = ref.copy()
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
    scan = read_volume(data.parent / "case3.nii.gz")
    assert predictor.predict(scan).info["postprocess"] == selection.options.to_dict()  # by default
    explicit = predictor.predict(scan, postprocessing=PostprocessOptions())  # the caller's options win
    assert explicit.info["postprocess"] == PostprocessOptions().to_dict()
    # exact predictions: nothing helps, nothing is applied, and the earlier choice is replaced
    monkeypatch.setattr(Predictor, "predict", _noisy_reference(data, spurious=False))
    clean = choose_validation_postprocessing(run, device="cpu")
    assert not clean.options.active
    monkeypatch.undo()
    assert not Predictor.from_run(run, device="cpu").recorded_postprocessing.active
