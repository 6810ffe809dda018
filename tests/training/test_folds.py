"""k-fold cross-validation into one run folder: layout, splits, out-of-fold predictions,
resuming fold by fold (finished folds skipped, a killed fold continued), and the CLI end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medseg.cli.main import main
from medseg.config.load import config_from_dict
from medseg.errors import ConfigError, MedsegError
from medseg.training import trainer as trainer_module
from medseg.training.checkpoint import load_checkpoint, save_checkpoint
from medseg.training.folds import fold_state, parse_folds, read_folds, train_folds
from tests.fixtures.synthetic_dataset import pipeline_dict, write_3d_dataset


def _pipeline(manifest: Path, cache: Path, folds: int = 2, **training) -> dict:
    t = {"epochs": 1, "iterations_per_epoch": 2, "patch_size": [16, 16, 16], **training}
    d = pipeline_dict(manifest, cache, "unet", 3, {"features": [4, 8]}, **t)
    d["data"]["folds"] = folds
    d["inference"] = {"backend": "torch"}
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_3d_dataset(tmp_path_factory.mktemp("cvdata"), n=4, shape=(20, 20, 14))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    config = config_from_dict(_pipeline(data, root / "cache"))
    result = train_folds(config, root / "run", "all", device="cpu")
    return config, root / "run", result


def test_parse_folds():
    assert parse_folds("all", 5) == [0, 1, 2, 3, 4] and parse_folds(None, 2) == [0, 1]
    assert parse_folds("2,0,2", 5) == [0, 2] and parse_folds([3], 5) == [3] and parse_folds(1, 3) == [1]
    for bad in ("0,5", "x", "", [-1]):
        with pytest.raises(ConfigError):
            parse_folds(bad, 5)


def _fake_last(folder: Path, epoch: int, epochs: int, elapsed: float = 0.0, budget=None) -> None:
    training = {"epochs": epochs, "max_minutes": budget}
    save_checkpoint(
        folder / "checkpoints" / "last.pt",
        {"epoch": epoch, "elapsed_seconds": elapsed, "config": {"training": training}},
    )


def test_fold_state_definition(tmp_path):
    assert fold_state(tmp_path / "none").status == "missing"
    _fake_last(tmp_path / "a", epoch=2, epochs=5)
    assert fold_state(tmp_path / "a").status == "partial"
    _fake_last(tmp_path / "b", epoch=4, epochs=5)
    assert fold_state(tmp_path / "b").finished
    _fake_last(tmp_path / "c", epoch=1, epochs=5, elapsed=61.0, budget=1.0)  # the budget ran out
    assert fold_state(tmp_path / "c").finished
    _fake_last(tmp_path / "d", epoch=1, epochs=5, elapsed=59.0, budget=1.0)
    assert fold_state(tmp_path / "d").status == "partial"


def test_folds_layout_splits_and_out_of_fold_predictions(trained, data):
    _, run, result = trained
    record = read_folds(run)
    assert record["k"] == 2 and record["folds"] == [0, 1]
    vals = [record["splits"][str(f)]["val"] for f in (0, 1)]
    assert sorted(vals[0] + vals[1]) == [f"case{i}" for i in range(4)] and not set(vals[0]) & set(vals[1])
    for f in (0, 1):
        folder = run / f"fold_{f}"
        split = json.loads((folder / "splits.json").read_text())
        assert split["fold"] == f and split["val"] == vals[f]
        assert set(split["train"]) == set(vals[1 - f])
        assert fold_state(folder).finished and result["folds"][f]["status"] == "trained"
        for cid in vals[f]:
            pred = nib.load(folder / "validation" / f"{cid}.nii.gz")
            ref = nib.load(run / "references" / f"{cid}.nii.gz")
            src = nib.load(data.parent / f"{cid}_seg.nii.gz")
            np.testing.assert_array_equal(np.asarray(ref.dataobj), np.asarray(src.dataobj))
            assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)
            prob = np.asarray(
                nib.load(folder / "validation" / "probabilities" / f"{cid}_probabilities.nii.gz").dataobj
            )
            assert prob.shape == (*src.shape, 3)
            np.testing.assert_allclose(prob.sum(-1), 1.0, atol=1e-4)
    pp = json.loads((run / "postprocessing.json").read_text())
    assert pp["folds"] == [0, 1] and set(pp["classes"]) == {"1", "2"} and result["postprocessing"] == pp
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["folds"] == 2


def test_resume_skips_finished_folds(trained):
    config, run, _ = trained
    stamps = {f: os.stat(run / f"fold_{f}" / "checkpoints" / "last.pt").st_mtime_ns for f in (0, 1)}
    with pytest.raises(MedsegError, match="already holds"):
        train_folds(config, run, "all", device="cpu")
    again = train_folds(config, run, "all", device="cpu", resume=True)
    assert [again["folds"][f]["status"] for f in (0, 1)] == ["skipped", "skipped"]
    assert stamps == {f: os.stat(run / f"fold_{f}" / "checkpoints" / "last.pt").st_mtime_ns for f in (0, 1)}
    changed = config.model_copy(deep=True)
    changed.data.folds = 3
    with pytest.raises(ConfigError, match=r"other cases, other patient groups or another data\.folds"):
        train_folds(changed, run, "all", device="cpu", resume=True)


class _KilledError(Exception):
    pass


def test_a_killed_fold_resumes_where_it_stopped(data, tmp_path, monkeypatch):
    config = config_from_dict(_pipeline(data, tmp_path / "cache", epochs=2))
    run = tmp_path / "run"

    def killed(self):  # the process dies after last.pt of the first epoch is written
        raise _KilledError

    monkeypatch.setattr(trainer_module.Trainer, "_write_metrics", killed)
    with pytest.raises(_KilledError):
        train_folds(config, run, "1", device="cpu")
    state = fold_state(run / "fold_1")
    assert state.status == "partial" and state.epoch == 0 and not state.oof_done
    monkeypatch.undo()
    result = train_folds(config, run, "1", device="cpu", resume=True)
    assert result["folds"][1]["status"] == "trained" and result["postprocessing"] is None  # fold 0 missing
    state = fold_state(run / "fold_1")
    assert state.finished and state.epoch == 1 and state.oof_done
    assert load_checkpoint(run / "fold_1" / "checkpoints" / "last.pt")["step"] == 4  # 2 + 2: continued
    assert not (run / "fold_0").exists() and read_folds(run)["folds"] == [1]


def test_cli_train_folds_crossval_and_predict(data, tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump(_pipeline(data, tmp_path / "cache")))
    run = tmp_path / "run"
    assert main(["train", str(pipeline), "-o", str(run), "--folds", "all", "--device", "cpu"]) == 0
    assert all(fold_state(run / f"fold_{f}").finished for f in (0, 1))
    assert main(["train", "-o", str(run), "--resume", "--device", "cpu"]) == 0  # nothing left to do
    assert (
        main(["train", str(pipeline), "-o", str(run), "--folds", "0", "--fold", "1"]) == ConfigError.exit_code
    )
    capsys.readouterr()
    assert main(["crossval", str(run), "--no-report", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "pooled" in printed and (run / "crossval" / "crossval.json").is_file()
    scans = tmp_path / "scans"
    scans.mkdir()
    img = nib.load(data.parent / "case0.nii.gz")
    nib.save(img, scans / "new.nii.gz")
    out = tmp_path / "pred"
    assert (
        main(["predict", "-m", str(run), "--folds", "0", "-i", str(scans), "-o", str(out), "--device", "cpu"])
        == 0
    )
    sidecar = json.loads((out / "new.json").read_text())
    assert sidecar["folds"] == [0] and nib.load(out / "new.nii.gz").shape == img.shape
