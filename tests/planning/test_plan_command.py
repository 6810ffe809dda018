"""``medseg plan``: the three-command contract (plan, train, predict with no hand edits, from another
folder), the refusal of bad datasets with every problem named, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.cli.main import main
from medseg.config import load_pipeline
from medseg.errors import ConfigError
from medseg.planning.api import dataset_problems, plan_dataset
from tests.cli_checks import one_error_line
from tests.planning.test_fingerprint import _msd, _save

AFFINE = np.diag([1.0, 1.0, 1.5, 1.0])


def _msd_case(root: Path, cid: str, img: np.ndarray, lab: np.ndarray, affine: np.ndarray) -> None:
    _save(root / "imagesTr" / f"{cid}.nii.gz", img, affine)
    _save(root / "labelsTr" / f"{cid}.nii.gz", lab, affine)


def _cases(n: int, shape=(24, 28, 16), empty_class: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    cases = {}
    for i in range(n):
        lab = np.zeros(shape, np.uint8)
        x0 = 6 + i % 3
        lab[x0 : x0 + 8, 8:18, 4:11] = 1
        if not empty_class:
            lab[x0 + 8 : x0 + 12, 8:18, 4:11] = 2
        img = (rng.normal(0, 1, shape) + 3.0 * (lab > 0) + 1.5 * (lab == 2)).astype(np.float32)
        cases[f"case_{i:02d}"] = (img, lab, AFFINE)
    return cases


def test_plan_train_predict_need_no_edits(tmp_path, monkeypatch, capsys):
    """plan -> train -> predict with absolute paths, run from an unrelated folder."""
    data = _msd(tmp_path / "data", _cases(6))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pipeline = tmp_path / "plans" / "p.yaml"
    assert (
        main(["plan", str(data), "-o", str(pipeline), "--budget", "0.05", "--no-probe", "--workers", "1"])
        == 0
    )
    assert "planned 3D" in capsys.readouterr().out
    fingerprint = json.loads((pipeline.parent / "fingerprint.json").read_text())
    assert fingerprint["summary"]["n_cases"] == 6
    config = load_pipeline(pipeline)
    assert Path(config.data.manifest).is_absolute() and config.training.max_minutes == 0.05
    # class 'b' always lies right of 'a' (centroids 0.4 / 0.67 of the width): a left-right flip would
    # swap them, so nothing is mirrored, and the YAML says why
    assert config.augmentation.flip_axes == [] and "lateralised" in pipeline.read_text()
    assert config.data.folds == 5
    text = pipeline.read_text()
    assert text.count("\n  # ") + text.count("\n# ") >= 10  # the decisions carry their reasons
    run = tmp_path / "run"
    assert main(["train", str(pipeline), "-o", str(run), "--set", "training.val_every=100"]) == 0
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "s.nii.gz").write_bytes((data / "imagesTr" / "case_00.nii.gz").read_bytes())
    out = tmp_path / "out"
    assert main(["predict", "-m", str(run), "-i", str(scans), "-o", str(out)]) == 0
    assert (out / "s.nii.gz").is_file()


def test_bad_dataset_is_refused_with_every_problem(tmp_path, capsys):
    data = _msd(tmp_path / "data", _cases(3, empty_class=True))
    with pytest.raises(ConfigError) as info:
        plan_dataset(data, tmp_path / "p.yaml", budget_minutes=5, probe=False, workers=1)
    message = str(info.value)
    assert "3 labelled case(s) for 5 folds (use --folds 3)" in message
    assert "class" in message and "b" in message  # class 2 ('b') has no voxel anywhere
    assert not (tmp_path / "p.yaml").exists() and not (tmp_path / "fingerprint.json").exists()
    assert main(["plan", str(data), "-o", str(tmp_path / "p.yaml"), "--no-probe", "--workers", "1"]) != 0
    one_error_line(capsys, "cannot plan", "5 folds")


def test_missing_files_are_named_before_any_fingerprint(tmp_path, capsys):
    data = _msd(tmp_path / "data", _cases(6))
    (data / "labelsTr" / "case_02.nii.gz").unlink()
    assert main(["plan", str(data), "-o", str(tmp_path / "p.yaml"), "--no-probe"]) != 0
    one_error_line(capsys, "missing", "case_02.nii.gz")


def test_dataset_problems_name_each_kind():
    class Case:
        def __init__(self, cid, label, split=None):
            self.id, self.images, self.label, self.split = cid, ["/nonexistent/i.nii.gz"], label, split
            self.group = None

    manifest = type("Manifest", (), {"cases": [Case("a", None), Case("t", None, "test")]})

    fp = {
        "dataset": {"n_labelled": 1},
        "summary": {
            "channels": [{"name": "T1", "mean": float("nan"), "std": 1, "p00_5": 0, "p99_5": 1}],
            "problems": ["label grid disagrees in case x"],
        },
    }
    problems = dataset_problems(manifest, fp, folds=5)
    assert any("file not found" in p for p in problems)
    assert any("case a: no label" in p for p in problems) and not any(
        "case t: no label" in p for p in problems
    )
    assert any("1 labelled case(s) for 5 folds (label more cases)" in p for p in problems)
    assert any("NaN" in p for p in problems) and "label grid disagrees in case x" in problems


def test_region_dataset_is_planned_with_the_region_loss(tmp_path):
    """nnU-Net v2 regions in dataset.json: sigmoid outputs, so the region loss (train refuses softmax)."""
    data = _msd(tmp_path / "data", _cases(6))
    meta = json.loads((data / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2], "inner": 2}
    meta["regions_class_order"] = [1, 2]
    (data / "dataset.json").write_text(json.dumps(meta))
    (tmp_path / "p_2d.yaml").write_text("an alternative of an earlier plan into this folder\n")
    plan_dataset(data, tmp_path / "p.yaml", budget_minutes=5, probe=False, workers=1)
    assert not (tmp_path / "p_2d.yaml").exists()  # this plan has one configuration: nothing stale stays
    config = load_pipeline(tmp_path / "p.yaml")
    assert config.loss.name == "region_dice_bce" and config.loss.class_weighting == "none"
    assert "the dataset defines regions" in (tmp_path / "p.yaml").read_text()
    from medseg.training.config_check import check_registries

    check_registries(config)  # the loss/region pairing train checks first


def test_test_split_is_never_read_and_folds_follow_the_option(tmp_path):
    data = _msd(tmp_path / "data", _cases(6))
    cases = _cases(2, seed=5)
    for cid, (img, lab, aff) in cases.items():  # held-out cases with a label value nobody declared
        lab[lab > 0] = 7
        _msd_case(data, f"test_{cid}", img, lab, aff)
    manifest = json.loads((data / "dataset.json").read_text())
    entries = [
        {
            "id": Path(t["image"]).name.split(".")[0],
            "images": [str(data / t["image"])],
            "label": str(data / t["label"]),
            "split": "train",
        }
        for t in manifest["training"]
    ]
    entries += [
        {
            "id": f"test_{cid}",
            "images": [str(data / "imagesTr" / f"test_{cid}.nii.gz")],
            "label": str(data / "labelsTr" / f"test_{cid}.nii.gz"),
            "split": "test",
        }
        for cid in cases
    ]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"name": "m", "labels": {"0": "bg", "1": "a", "2": "b"}, "cases": entries}))
    plan_dataset(path, tmp_path / "p.yaml", budget_minutes=5, probe=False, workers=1, folds=3)
    fingerprint = json.loads((tmp_path / "fingerprint.json").read_text())
    assert fingerprint["summary"]["n_cases"] == 6 and fingerprint["dataset"]["n_test_left_out"] == 2
    assert load_pipeline(tmp_path / "p.yaml").data.folds == 3


def test_nan_intensities_and_a_missing_gpu_are_refused(tmp_path, capsys):
    cases = _cases(6)
    cases["case_03"][0][2, 2, 2] = np.nan
    data = _msd(tmp_path / "data", cases)
    with pytest.raises(ConfigError, match="NaN or infinite intensities in 1 case"):
        plan_dataset(data, tmp_path / "p.yaml", budget_minutes=5, probe=False, workers=1)
    import torch

    if not torch.cuda.is_available():
        assert main(["plan", str(data), "-o", str(tmp_path / "q.yaml"), "--device", "cuda"]) != 0
        one_error_line(capsys, "no CUDA device", "--no-probe")
    assert main(["plan", str(data), "-o", str(tmp_path / "q.yaml"), "--memory-gb", "0"]) != 0
    one_error_line(capsys, "--memory-gb must be positive")


def _grouped_manifest(tmp_path: Path, data: Path, test_group: str) -> Path:
    """The MSD cases as a manifest where every two cases are one patient; one more patient's case
    (group ``test_group``) is held out as ``test``."""
    meta = json.loads((data / "dataset.json").read_text())
    entries = []
    for i, t in enumerate(meta["training"]):
        cid = Path(t["image"]).name.split(".")[0]
        split = "test" if i == 0 else "train"
        group = test_group if i == 0 else f"patient_{i // 2}"
        entries.append(
            {"id": cid, "images": [str(data / t["image"])], "label": str(data / t["label"]), "split": split}
            | {"group": group}
        )
    path = tmp_path / "grouped.json"
    path.write_text(json.dumps({"name": "g", "labels": {"0": "bg", "1": "a", "2": "b"}, "cases": entries}))
    return path


def test_folds_are_counted_in_patients_and_a_patient_across_splits_is_refused(tmp_path):
    from medseg.data.manifest import load_manifest
    from medseg.training.setup import choose_split

    data = _msd(tmp_path / "data", _cases(7))
    # cases 1..6 are patients 0..3 (0: one case, 1 and 2: two, 3: one); case 0 is held out as patient 0
    leaky = _grouped_manifest(tmp_path, data, test_group="patient_0")
    with pytest.raises(ConfigError, match=r"patient_0: group \(patient\) has cases in several splits"):
        plan_dataset(leaky, tmp_path / "p.yaml", budget_minutes=5, probe=False, workers=1, folds=3)
    path = _grouped_manifest(tmp_path, data, test_group="held_out_patient")
    with pytest.raises(ConfigError, match=r"4 patient\(s\) for 5 folds \(use --folds 4\)"):
        plan_dataset(path, tmp_path / "p.yaml", budget_minutes=5, probe=False, workers=1)
    plan_dataset(path, tmp_path / "p.yaml", budget_minutes=5, probe=False, workers=1, folds=4)
    config = load_pipeline(tmp_path / "p.yaml")
    text = " ".join(line.strip(" #") for line in (tmp_path / "p.yaml").read_text().splitlines())
    assert config.data.folds == 4 and "6 labelled, 4 patients (folds keep a patient's cases together)" in text
    manifest = load_manifest(path)
    group = {c.id: c.group for c in manifest.cases}
    for fold in range(4):  # the trainer's folds keep each patient on one side
        split = choose_split(manifest, config, fold, config.training.seed)
        assert not {group[c] for c in split["train"]} & {group[c] for c in split["val"]}
        assert "case_00" not in split["train"] + split["val"]
