"""``medseg export`` and ``medseg convert SEG|RTSTRUCT --reference``: results and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.cli.main import COMMANDS, main
from medseg.io import read_volume, write_volume
from medseg.volume import Volume

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSEG_NO_PROGRESS="1")
    return subprocess.run(
        [sys.executable, "-m", "medseg", *args], capture_output=True, text=True, env=env, timeout=120
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, proc
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def mask_file(synthetic_mask, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "case01.nii.gz"
    write_volume(synthetic_mask.reoriented("RAS"), path)  # another orientation than the series
    return path


def test_export_then_convert_back(synthetic, synthetic_mask, mask_file, labels_file, tmp_path, capsys):
    assert COMMANDS["export"] == "export"
    for fmt in ("dicom-seg", "rtstruct"):
        out = tmp_path / f"mask.{fmt}.dcm"
        args = ["export", "--mask", str(mask_file), "--reference", str(synthetic.folder), "--format", fmt]
        assert main([*args, "--labels", str(labels_file), "--output", str(out), "--model", "m1"]) == 0
        assert capsys.readouterr().out.strip() == str(out)
        back = tmp_path / f"back_{fmt}.nii.gz"
        assert main(["convert", str(out), str(back), "--reference", str(synthetic.folder)]) == 0
        imported = read_volume(back)
        assert np.allclose(imported.affine, synthetic_mask.affine, atol=1e-4)
        assert np.array_equal(imported.array, synthetic_mask.array), fmt
    # both formats into a folder, named after the mask
    outdir = tmp_path / "both"
    outdir.mkdir()
    args = ["export", "--mask", str(mask_file), "--reference", str(synthetic.folder), "--output", str(outdir)]
    assert main([*args, "--format", "dicom-seg,rtstruct", "--labels", str(labels_file)]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["case01.rtstruct.dcm", "case01.seg.dcm"]


def test_user_errors_are_one_line(synthetic, synthetic_mask, mask_file, labels_file, tmp_path):
    ref = str(synthetic.folder)
    base = ["export", "--mask", str(mask_file), "--reference", ref, "--format", "dicom-seg"]
    # a mask on another grid
    shifted = synthetic_mask.affine.copy()
    shifted[:3, 3] += 3.0
    other = tmp_path / "other.nii.gz"
    write_volume(Volume(synthetic_mask.array, shifted), other)
    proc = run_cli(
        "export", "--mask", str(other), "--reference", ref, "--format", "rtstruct", "--output", "x.dcm"
    )
    assert_one_line_error(proc, 9, "is not on the grid of reference series", "resample")
    # labels that the file does not name
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"1": "liver"}))
    proc = run_cli(*base, "--labels", str(names), "--output", str(tmp_path / "x.dcm"))
    assert_one_line_error(proc, 10, "label value(s) 3, 4", "labels file")
    # an unknown format, an existing output
    proc = run_cli(*base[:-1], "dicom", "--output", str(tmp_path / "x.dcm"))
    assert_one_line_error(proc, 4, "unknown export format 'dicom'")
    existing = tmp_path / "exists.dcm"
    existing.write_bytes(b"x")
    proc = run_cli(*base, "--output", str(existing))
    assert_one_line_error(proc, 2, "already exists", "--overwrite")
    # an RTSTRUCT needs its image series to become a label map
    rt = tmp_path / "rt.dcm"
    assert main(["-q", *base[:-1], "rtstruct", "--labels", str(labels_file), "--output", str(rt)]) == 0
    proc = run_cli("convert", str(rt), str(tmp_path / "rt.nii.gz"))
    assert_one_line_error(proc, 2, "RTSTRUCT", "--reference")
    proc = run_cli("convert", str(mask_file), str(tmp_path / "m.nii.gz"), "--reference", ref)
    assert_one_line_error(proc, 2, "--reference applies to DICOM SEG and RTSTRUCT")


def test_help_lists_export():
    proc = run_cli("export", "--help")
    assert proc.returncode == 0
    for option in ("--mask", "--reference", "--format", "--labels", "--output", "--fractional"):
        assert option in proc.stdout
    assert "--overlap" in run_cli("convert", "--help").stdout
