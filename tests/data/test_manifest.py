"""Manifests: MSD layout, medseg manifests, 2D images, label maps, and the all-problems check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.cli.main import main
from medseg.data.cases import load_case
from medseg.data.check import check_manifest
from medseg.data.manifest import load_manifest
from medseg.errors import ConfigError
from tests.conftest import shared_path
from tests.fixtures.synthetic_dataset import write_2d_dataset, write_3d_dataset


def test_medseg_manifest_and_data_root(tmp_path, monkeypatch):
    manifest = write_3d_dataset(tmp_path / "d", n=3)
    m = load_manifest(manifest)
    assert m.cases[0].images[0] == str((tmp_path / "d" / "case0.nii.gz").resolve())
    assert check_manifest(m) == []
    # the same manifest moved elsewhere finds its data through the data root
    moved = tmp_path / "elsewhere.json"
    moved.write_text(manifest.read_text())
    assert check_manifest(load_manifest(moved, data_root=tmp_path / "d")) == []
    monkeypatch.setenv("MEDSEG_DATA_ROOT", str(tmp_path / "d"))
    assert check_manifest(load_manifest(moved)) == []


def test_2d_png_with_label_map(tmp_path):
    m = load_manifest(write_2d_dataset(tmp_path / "d", n=2))
    case = load_case(m.cases[0], m)
    assert case.image.shape == (48, 48, 1, 1)
    assert set(np.unique(case.label.array)) == {0, 1}


def test_malformed_manifests_are_config_errors(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"labels": {"1": "x"}, "cases": [{"id": "a", "images": ["a.nii"]}]}))
    with pytest.raises(ConfigError, match="labels must include 0"):
        load_manifest(p)
    p.write_text(json.dumps({"labels": {"0": "bg"}, "cases": [{"id": "a", "images": ["a"], "lable": "b"}]}))
    with pytest.raises(ConfigError, match="unknown key"):
        load_manifest(p)


def test_numeric_ids_and_groups_read_as_text(tmp_path):
    p = tmp_path / "m.json"
    cases = [{"id": 7, "images": ["a.nii"], "group": 1007}, {"id": "8", "images": ["b.nii"], "group": "1007"}]
    p.write_text(json.dumps({"labels": {"0": "bg", "1": "x"}, "cases": cases}))
    m = load_manifest(p)
    assert [c.id for c in m.cases] == ["7", "8"]
    assert {c.group for c in m.cases} == {"1007"}  # one patient, however it was written
    # numbers that would name a patient ambiguously are refused, not turned into "1007.0" or "nan"
    for bad in (1007.0, float("nan"), True):
        p.write_text(
            json.dumps({"labels": {"0": "bg"}, "cases": [{"id": "a", "images": ["a"], "group": bad}]})
        )
        with pytest.raises(ConfigError, match="group"):
            load_manifest(p)


def test_every_problem_is_reported(tmp_path):
    manifest = write_3d_dataset(tmp_path / "d", n=4)
    data = json.loads(manifest.read_text())
    data["cases"][0]["images"] = ["missing.nii.gz"]
    data["cases"][1]["label"] = "case2_seg.nii.gz"  # fine
    lab = np.full((28, 32, 24), 5, np.uint8)
    import nibabel as nib

    nib.save(nib.Nifti1Image(lab, np.diag([-1.2, 1.0, 1.5, 1.0])), tmp_path / "d" / "bad_values.nii.gz")
    data["cases"][2]["label"] = "bad_values.nii.gz"
    nib.save(nib.Nifti1Image(lab[:10], np.eye(4)), tmp_path / "d" / "bad_grid.nii.gz")
    data["cases"][3]["label"] = "bad_grid.nii.gz"
    manifest.write_text(json.dumps(data))
    problems = check_manifest(load_manifest(manifest))
    text = "\n".join(map(str, problems))
    assert len(problems) == 3, text
    assert "case0: image file not found" in text
    assert "case2: label values [5] are not declared classes" in text
    assert "case3: label bad_grid.nii.gz is not on the image grid" in text


@pytest.mark.shared
def test_msd_anomalies_rejected_with_every_problem(shared_datasets, tmp_path, capsys):
    root = shared_path(shared_datasets, "msd_hippocampus")
    anomalies = shared_path(root, "anomalies")
    manifest = {
        "labels": {"0": "background", "1": "anterior", "2": "posterior"},
        "cases": [
            {
                "id": "hippocampus_001",
                "images": ["imagesTr/hippocampus_001.nii.gz"],
                "label": "labelsTr/hippocampus_001.nii.gz",
            },
            {
                "id": "hippocampus_118",
                "images": ["anomalies/images_without_label/hippocampus_118.nii.gz"],
                "label": "labelsTr/hippocampus_118.nii.gz",
            },
            {
                "id": "hippocampus_010",
                "images": ["imagesTr/hippocampus_010.nii.gz"],
                "label": "anomalies/labels_without_image/hippocampus_010.nii.gz",
            },
            {
                "id": "hippocampus_281",
                "images": ["imagesTr/hippocampus_003.nii.gz"],
                "label": "anomalies/labels_without_image/hippocampus_281.nii.gz",
            },
        ],
    }
    assert anomalies.is_dir()
    path = tmp_path / "anomalies.json"
    path.write_text(json.dumps(manifest))
    problems = check_manifest(load_manifest(path, data_root=root))
    by_case = {p.case: p.message for p in problems}
    assert "hippocampus_001" not in by_case
    assert "label file not found" in by_case["hippocampus_118"]
    assert "image file not found" in by_case["hippocampus_010"]
    assert "not on the image grid" in by_case["hippocampus_281"]
    assert "512, 512, 94" in by_case["hippocampus_281"]
    # the CLI lists all of them and exits non-zero
    code = main(["manifest", "check", str(path), "--data-root", str(root)])
    out = capsys.readouterr().out
    assert code != 0
    for case in ("hippocampus_118", "hippocampus_010", "hippocampus_281"):
        assert case in out
    # and training refuses it
    from medseg.data.check import require_valid
    from medseg.errors import MedsegError

    with pytest.raises(MedsegError, match="3 problem"):
        require_valid(load_manifest(path, data_root=root), str(path))


@pytest.mark.shared
def test_shipped_manifests_check_clean(shared_datasets):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for name in ("msd_hippocampus.json", "isbi2012_em.json"):
        m = load_manifest(repo / "data_manifests" / name, data_root=shared_datasets)
        if name.startswith("msd"):
            assert len(m.split("train")) == 166 and len(m.split("val")) == 42
        assert check_manifest(m) == []
