"""The ``medseg`` command line: user errors are one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import main
from medseg.io import read_volume, write_volume
from medseg.volume import Volume
from tests.fixtures.dicom_factory import regular_positions, write_series
from tests.fixtures.fresh_import import modules_loaded

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    return subprocess.run(
        [sys.executable, "-m", "medseg", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def _assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode not in (0, 1), proc  # 1 is Python's code for an uncaught exception
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def dicom_dir(tmp_path) -> Path:
    write_series(tmp_path / "ct", regular_positions((0, 0, 0), (0, 0, 1), 2.0, 5), intercept=-1024)
    return tmp_path / "ct"


def test_help_lists_commands_and_imports_nothing_heavy():
    code = "from medseg.cli.main import build_parser; build_parser()"
    heavy = ("torch", "SimpleITK", "pydicom", "monai", "nibabel", "scipy")
    assert modules_loaded(code, heavy) == []
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("info", "convert"):
        assert command in proc.stdout


def test_info_text_and_json(dicom_dir, capsys):
    assert main(["info", str(dicom_dir)]) == 0
    text = capsys.readouterr().out
    assert "orientation   LAS" in text and "CT" in text
    assert main(["info", str(dicom_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [5, 6, 5]
    assert report["spacing"] == pytest.approx([0.7, 0.8, 2.0])
    assert report["orientation"] == "LAS"
    assert report["n_files"] == 5
    assert report["series_uid"]


def test_info_reports_4d_and_tilt_warnings(tmp_path, capsys):
    base = regular_positions((0, 0, 0), (0, 0, 1), 2.0, 3)
    write_series(tmp_path / "d4", np.concatenate([base, base]), temporal=[1] * 3 + [2] * 3, modality="MR")
    assert main(["info", str(tmp_path / "d4"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_volumes"] == 2 and report["shape"] == [5, 6, 3, 2]
    assert any("4D series" in w for w in report["warnings"])


def test_convert_dicom_to_each_format(dicom_dir, tmp_path):
    ref = read_volume(dicom_dir)
    for ext in ("nii.gz", "nrrd", "mha"):
        assert main(["convert", str(dicom_dir), str(tmp_path / f"o.{ext}")]) == 0
        back = read_volume(tmp_path / f"o.{ext}")
        np.testing.assert_array_equal(back.array, ref.array)
        np.testing.assert_allclose(back.affine, ref.affine, atol=1e-4)


def test_convert_with_window(dicom_dir, tmp_path):
    assert main(["convert", str(dicom_dir), str(tmp_path / "w.nii.gz"), "--window=-500,1000"]) == 0
    arr = nib.load(tmp_path / "w.nii.gz").get_fdata()
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    raw = read_volume(dicom_dir).array
    np.testing.assert_allclose(arr, np.clip((raw + 1000) / 1000, 0, 1), atol=1e-6)


def test_convert_all_series(tmp_path):
    write_series(
        tmp_path / "d" / "a",
        regular_positions((0, 0, 0), (0, 0, 1), 1, 3),
        series_number=2,
        description="arterial phase",
    )
    write_series(
        tmp_path / "d" / "b",
        regular_positions((0, 0, 0), (0, 0, 1), 1, 4),
        series_number=3,
        description="venous",
    )
    assert main(["convert", str(tmp_path / "d"), str(tmp_path / "out"), "--all"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(names) == 2 and names[0].startswith("S002_arterial_phase_")


def test_existing_output_needs_overwrite(dicom_dir, tmp_path):
    out = tmp_path / "o.nii.gz"
    write_volume(Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), out)
    proc = run_cli("convert", str(dicom_dir), str(out))
    _assert_user_error(proc, "already exists", "--overwrite")
    assert nib.load(out).shape == (2, 2, 2)  # untouched
    assert run_cli("convert", str(dicom_dir), str(out), "--overwrite").returncode == 0
    assert nib.load(out).shape == (5, 6, 5)


def test_user_errors_are_one_line(tmp_path, dicom_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    write_series(tmp_path / "two" / "a", regular_positions((0, 0, 0), (0, 0, 1), 1, 2))
    write_series(tmp_path / "two" / "b", regular_positions((0, 0, 0), (0, 0, 1), 1, 2))
    uneven = np.array([[0, 0, z] for z in (0.0, 1.0, 5.0)])
    write_series(tmp_path / "uneven", uneven)
    cases = [
        (("info", str(tmp_path / "missing")), ("no such file or folder",)),
        (("info", str(tmp_path / "empty")), ("no DICOM image series", "empty")),
        (("info", str(tmp_path / "notes.txt")), ("not a supported image",)),
        (("info", str(tmp_path / "bad.nii.gz")), ("cannot read NIfTI",)),
        (("convert", str(tmp_path / "two"), str(tmp_path / "x.nii.gz")), ("2 image series", "--series")),
        (
            ("convert", str(tmp_path / "uneven"), str(tmp_path / "x.nii.gz")),
            ("non-uniform slice spacing", "--resample-uneven"),
        ),
        (("convert", str(dicom_dir), str(tmp_path / "x.png")), ("cannot write x.png",)),
        (("convert", str(dicom_dir), str(tmp_path / "x.nii.gz"), "--window", "nope"), ("unknown window",)),
    ]
    for args, needles in cases:
        _assert_user_error(run_cli(*args), *needles)
    assert not (tmp_path / "x.nii.gz").exists()


def test_distinct_exit_codes(tmp_path):
    (tmp_path / "empty").mkdir()
    codes = {
        run_cli("info", str(tmp_path / "missing")).returncode,
        run_cli("info", str(tmp_path / "empty")).returncode,
    }
    assert len(codes) == 2


def test_resample_uneven_option(tmp_path):
    uneven = np.array([[0, 0, z] for z in (0.0, 1.0, 5.0, 6.0)])
    write_series(tmp_path / "uneven", uneven)
    out = tmp_path / "r.nii.gz"
    assert (
        main(["convert", str(tmp_path / "uneven"), str(out), "--resample-uneven", "--slice-spacing", "1"])
        == 0
    )
    assert nib.load(out).shape == (5, 6, 7)
