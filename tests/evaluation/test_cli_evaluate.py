"""``medseg evaluate`` in-process: Markdown on stdout, files, and one-line user errors."""

from __future__ import annotations

import json

import pytest

from medseg.cli.main import main
from medseg.errors import ConfigError, GeometryMismatchError, InputNotFoundError
from tests.cli_checks import one_error_line
from tests.evaluation.synthetic import AFFINE, label_pair, write_dataset, write_labels


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_PROGRESS", "1")


def test_evaluate_prints_markdown_and_writes_the_folder(tmp_path, capsys):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=2)
    out = tmp_path / "eval"
    code = main(
        ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--labels", "1:head,2:tail",
         "--nsd-tolerance", "2", "--output", str(out)]
    )  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert lines[0].startswith("| class | n | Dice | IoU | HD95 (mm) | ASSD (mm) | NSD@2mm")
    assert lines[1].startswith("| --- | ---: |")
    head = next(line for line in lines if line.startswith("| head (1) |"))
    summary = json.loads((out / "summary.json").read_text())
    dice = summary["classes"]["1"]["metrics"]["dice"]
    assert f"{dice['mean']:.3f} ± {dice['std']:.3f}" in head
    assert (out / "metrics.csv").is_file() and (out / "evaluation.json").is_file()


def test_overlays_option_draws_one_png_per_case(tmp_path, capsys):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=2)
    out = tmp_path / "eval"
    assert (
        main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--output", str(out), "--overlays"])
        == 0
    )
    pngs = sorted(p.name for p in (out / "overlays").iterdir())
    assert pngs == ["case_000.png", "case_001.png"]
    assert (out / "overlays" / "case_000.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_mismatch_is_one_line_and_resample_pred_fixes_it(tmp_path, capsys):
    pred, ref = label_pair(3)
    write_labels(tmp_path / "ref" / "c.nii.gz", ref)
    shifted = AFFINE.copy()
    shifted[0, 3] += 1.0  # the prediction's grid is 1 mm off
    write_labels(tmp_path / "pred" / "c.nii.gz", pred, shifted)
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref")]
    assert main(argv) == GeometryMismatchError.exit_code
    one_error_line(capsys, "medseg evaluate: error:", "not on the grid", "c.nii.gz", "--resample-pred")
    assert main([*argv, "--resample-pred"]) == 0
    assert "| label_1 (1) |" in capsys.readouterr().out


def test_missing_folder_and_bad_options_are_one_line(tmp_path, capsys):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=1)
    assert (
        main(["evaluate", "--pred", str(tmp_path / "missing"), "--ref", str(ref_dir)])
        == InputNotFoundError.exit_code
    )
    one_error_line(capsys, "prediction folder", "does not exist")
    assert (
        main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--overlays"])
        == ConfigError.exit_code
    )
    one_error_line(capsys, "--overlays needs --output")
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--window", "sunset"])
    assert code == ConfigError.exit_code
    one_error_line(capsys, "unknown window 'sunset'")
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--labels", "liver"])
    assert code == ConfigError.exit_code
    one_error_line(capsys, "'liver' is not a label value")


def test_unmatched_cases_are_reported(tmp_path, capsys):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=2)
    (pred_dir / "case_001.nii.gz").unlink()
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir)]) == 0
    captured = capsys.readouterr()
    assert "References without prediction (1): case_001" in captured.out
    assert "case_001" in captured.err  # also logged as a warning
