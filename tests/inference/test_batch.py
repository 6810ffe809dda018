"""Batch prediction: mixed inputs, failures listed, resumable, atomic, sharded across ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.inference.discovery import discover
from medseg.io.atomic import host_tag
from tests.fixtures.dicom_factory import regular_positions, write_series
from tests.fixtures.models import make_run

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    return subprocess.run(
        [sys.executable, "-m", "medseg", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture
def archive(tmp_path) -> Path:
    root = tmp_path / "archive"
    rng = np.random.default_rng(0)
    for name, aff in [("a", np.eye(4)), ("sub/b", np.diag([-1.0, -1.0, 2.0, 1.0]))]:
        p = root / f"{name}.nii.gz"
        p.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(rng.normal(size=(20, 18, 12)).astype(np.float32), aff), p)
    write_series(root / "patient1" / "ct", regular_positions((0, 0, 0), (0, 0, 1), 2.0, 6), rows=20, cols=18)
    (root / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("scanned on tuesday")
    return root


def test_discovery_names_cases_and_lists_what_is_not_a_scan(archive):
    cases, skipped = discover(archive)
    assert sorted(c.id for c in cases) == ["a", "broken", "patient1__ct", "sub__b"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["empty"] == "empty folder"
    assert "not an image" in reasons["notes.txt"]


def test_batch_writes_good_cases_lists_bad_ones_and_resumes(archive, tmp_path):
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    proc = _cli("predict", "-m", str(run), "-i", str(archive), "-o", str(out), "--device", "cpu")
    assert proc.returncode == 14, proc.stderr
    assert "Traceback" not in proc.stderr
    for case, shape in [("a", (20, 18, 12)), ("sub__b", (20, 18, 12)), ("patient1__ct", (18, 20, 6))]:
        img = nib.load(out / f"{case}.nii.gz")
        assert img.shape == shape and img.get_data_dtype() == np.uint8
    record = json.loads((out / "predictions.json").read_text())
    status = {c["id"]: c for c in record["cases"]}
    assert status["a"]["status"] == "ok"
    assert status["broken"]["status"] == "failed" and "cannot read NIfTI" in status["broken"]["error"]
    assert status["empty"]["error"] == "empty folder"
    assert "not an image" in status["notes.txt"]["error"]
    assert "| a | 20x18x12 |" in proc.stdout
    # rerun: finished cases are skipped; one a killed run left without its sidecar is redone
    (out / "sub__b.json").unlink()
    (out / f".a.nii.gz.{host_tag()}-999999999.x1.tmp").mkdir()  # a killed writer's temporary folder
    again = _cli("predict", "-m", str(run), "-i", str(archive), "-o", str(out), "--device", "cpu")
    assert again.returncode == 14
    status = {c["id"]: c["status"] for c in json.loads((out / "predictions.json").read_text())["cases"]}
    assert status["a"] == status["patient1__ct"] == "skipped"
    assert status["sub__b"] == "ok" and (out / "sub__b.json").is_file()
    assert not list(out.glob(".*.tmp"))
    # all good: exit 0
    good = tmp_path / "good"
    good.mkdir()
    (archive / "a.nii.gz").rename(good / "a.nii.gz")
    assert (
        _cli(
            "predict", "-m", str(run), "-i", str(good), "-o", str(tmp_path / "o2"), "--device", "cpu"
        ).returncode
        == 0
    )


def test_killed_batch_leaves_no_partial_output(tmp_path):
    run = make_run(tmp_path / "run")
    src = tmp_path / "many"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        nib.save(
            nib.Nifti1Image(rng.normal(size=(48, 48, 48)).astype(np.float32), np.eye(4)),
            src / f"s{i:02d}.nii.gz",
        )
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medseg",
            "predict",
            "-m",
            str(run),
            "-i",
            str(src),
            "-o",
            str(out),
            "--device",
            "cpu",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.nii.gz"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    written = sorted(out.glob("*.nii.gz"))
    assert 3 <= len(written) < 40
    for p in written:  # every file under a final name is complete and readable
        assert nib.load(p).get_fdata().shape == (48, 48, 48)
    leftovers = [p for p in out.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    for d in leftovers:  # an interrupted temporary folder may remain, never a final name
        assert not any(f.name.endswith(".nii.gz") and f.parent == out for f in d.iterdir())


@pytest.mark.slow
def test_torchrun_shards_cases_without_overlap(tmp_path):
    run = make_run(tmp_path / "run")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(7):
        nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), src / f"c{i}.nii.gz")
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29544",
            "-m",
            "medseg",
            "predict",
            "-m",
            str(run),
            "-i",
            str(src),
            "-o",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "predictions.json").read_text())
    ids = [c["id"] for c in record["cases"]]
    assert sorted(ids) == [f"c{i}" for i in range(7)]  # none twice, none missed
    assert all(c["status"] == "ok" for c in record["cases"])


def test_predict_exports_seg_and_rtstruct_for_dicom_inputs(tmp_path):
    """--format nifti,dicom-seg,rtstruct: the SEG and RTSTRUCT read back to the NIfTI mask."""
    from medseg.export import read_label_object
    from medseg.inference import Predictor
    from medseg.inference.batch import predict_folder
    from medseg.io import read_volume
    from medseg.transforms.preprocess import Plan
    from tests.export.helpers import make_synthetic
    from tests.fixtures.models import Threshold

    synthetic = make_synthetic(tmp_path / "ct")
    scan = read_volume(tmp_path / "ct")
    plan = Plan.from_dataset(
        [(scan, None)], {0: "background", 1: "liver"}, target_spacing=None, normalization="none"
    )
    predictor = Predictor(Threshold(0.0), plan, (16, 16, 8))  # soft tissue (40 HU) vs fat (-100 HU)
    result = predict_folder(
        predictor, tmp_path / "ct", tmp_path / "out", formats=("nifti", "dicom-seg", "rtstruct")
    )
    assert result.exit_code == 0, result.table()
    nifti = read_volume(tmp_path / "out" / "ct.nii.gz")
    np.testing.assert_array_equal(nifti.array, (synthetic.label_volume_array() > 0).astype(np.uint8))
    seg = read_label_object(tmp_path / "out" / "ct.seg.dcm", tmp_path / "ct")
    np.testing.assert_array_equal(seg.array, nifti.array)
    rt = read_label_object(tmp_path / "out" / "ct.rtstruct.dcm", tmp_path / "ct")
    np.testing.assert_array_equal(rt.array, nifti.array)


def test_series_split_over_folders_and_output_inside_input(tmp_path):
    from medseg.io.dicom.scan import scan_dicom  # noqa: F401  (the discovery path under test)

    root = tmp_path / "cd"
    uid = "1.2.826.0.1.3680043.8.498.77"
    write_series(root / "DICOM" / "A", regular_positions((0, 0, 0), (0, 0, 1), 1.0, 3), series_uid=uid)
    write_series(
        root / "DICOM" / "B", regular_positions((0, 0, 3), (0, 0, 1), 1.0, 3), series_uid=uid, shuffle_seed=5
    )
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    (root / "out").mkdir()
    (root / "out" / "old.nii.gz").write_bytes(b"not a scan")
    cases, skipped = discover(root, exclude=root / "out")
    assert [c.id for c in cases] == ["DICOM"]
    assert [s for s in skipped if not s.ignored] == []
    from medseg.io import read_volume

    assert read_volume(cases[0].path, series=cases[0].series).shape == (5, 6, 6)  # all 6 slices


def test_probabilities_outside_the_crop_are_background(rng):
    from medseg.inference import Predictor
    from medseg.transforms.preprocess import Plan
    from medseg.volume import Volume
    from tests.fixtures.models import Threshold

    data = np.zeros((20, 20, 20), np.float32)
    data[5:15, 5:15, 5:15] = rng.normal(1, 0.5, (10, 10, 10)).astype(np.float32) + 0.01
    scan = Volume(data, np.eye(4))
    plan = Plan.from_dataset([(scan, None)], {0: "bg", 1: "fg"}, target_spacing=None, normalization="none")
    pred = Predictor(Threshold(1.0), plan, (8, 8, 8)).predict(scan, probabilities=True)
    probs = pred.probabilities.array
    assert probs[0, 0, 0, 0] == 1.0 and probs[0, 0, 0, 1] == 0.0
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_channel_mismatch_is_a_user_error(rng):
    from medseg.errors import MedsegError
    from medseg.inference import Predictor
    from medseg.transforms.preprocess import Plan
    from medseg.volume import Volume
    from tests.fixtures.models import Threshold

    two = Volume(rng.normal(size=(8, 8, 8, 2)).astype(np.float32), np.eye(4))
    plan = Plan.from_dataset([(two, None)], {0: "bg", 1: "fg"}, target_spacing=None, normalization="none")
    with pytest.raises(MedsegError, match="1 channel\\(s\\) but the model takes 2"):
        Predictor(Threshold(0.0), plan, (8, 8, 8)).predict(Volume(two.array[..., 0], np.eye(4)))
