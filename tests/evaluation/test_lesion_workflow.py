"""``medseg evaluate --lesions``: lesion columns, summary, lesions.json and FROC on hand-made cases.

Two 3D cases on a 1 x 1 x 2 mm grid (a voxel is 2 mm³), one class:

* ``case_a``: a 4x4x4 lesion (128 mm³) predicted exactly, a 2x2x1 lesion (8 mm³) missed and a
  2x2x2 false positive (16 mm³) far from both. Lesion-wise Dice (1 + 0) / (2 lesions + 1 FP) = 1/3,
  HD95 (0 + 374 + 374) / 3 mm; detection 1 of 2 lesions, 1 of 2 components true: sensitivity,
  precision and F1 0.5 at every IoU threshold.
* ``case_b``: a 3x3x3 lesion (54 mm³) predicted exactly: Dice 1, HD95 0, F1 1.

FROC (probability maps, candidates at 0.1): case_a scores 0.9 (big lesion), 0.3 (small lesion) and
0.6 (false positive), case_b 0.8. Operating points (FPs per case, sensitivity): 0.9 -> (0, 1/3),
0.8 -> (0, 2/3), 0.6 -> (0.5, 2/3), 0.3 -> (0.5, 1); the sensitivity is 2/3 at 1/8 and 1/4 FPs per
case and 1 at 1/2, 1, 2, 4 and 8, so the FROC score is (2 x 2/3 + 5 x 1) / 7 = 19/21.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.cli.main import main
from medseg.errors import ConfigError, InputNotFoundError
from medseg.evaluation.results import CSV_COLUMNS
from medseg.io import write_volume
from medseg.volume import Volume
from tests.cli_checks import one_error_line
from tests.evaluation.synthetic import write_labels

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
SHAPE = (20, 20, 10)
BIG, SMALL, FP = np.s_[2:6, 2:6, 2:6], np.s_[14:16, 14:16, 7:8], np.s_[14:16, 2:4, 7:9]
CUBE = np.s_[8:11, 8:11, 3:6]
THIRD = 1 / 3


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_PROGRESS", "1")


def write_lesion_cases(root: Path, perfect: bool = False) -> tuple[Path, Path, Path]:
    """``root/{pred,ref,prob}`` with case_a and case_b (``perfect``: predictions equal the references)."""
    ref_a, pred_a = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    ref_a[BIG] = ref_a[SMALL] = 1
    pred_a[BIG] = pred_a[FP] = 1
    ref_b = np.zeros(SHAPE, np.uint8)
    ref_b[CUBE] = 1
    for case, ref, pred in (("case_a", ref_a, pred_a), ("case_b", ref_b, ref_b)):
        write_labels(root / "ref" / f"{case}.nii.gz", ref, AFFINE)
        write_labels(root / "pred" / f"{case}.nii.gz", ref if perfect else pred, AFFINE)
    prob_a, prob_b = np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.float32)
    prob_a[BIG], prob_a[SMALL], prob_a[FP] = 0.9, 0.3, 0.6
    prob_b[CUBE] = 0.8
    for case, fg in (("case_a", prob_a), ("case_b", prob_b)):
        channels = np.stack([1 - fg, fg], axis=-1).astype(np.float32)
        path = root / "prob" / f"{case}_probabilities.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_volume(Volume(channels, AFFINE), path)
    return root / "pred", root / "ref", root / "prob"


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as fh:
        return {rec["case"]: rec for rec in csv.DictReader(fh)}


def _evaluate(tmp_path: Path, *extra: str, out: str = "eval") -> Path:
    pred, ref, _ = write_lesion_cases(tmp_path)
    argv = ["evaluate", "--pred", str(pred), "--ref", str(ref), "--labels", "1:lesion", "--output"]
    assert main([*argv, str(tmp_path / out), *extra]) == 0
    return tmp_path / out


def test_lesion_columns_summary_and_lesions_json_have_the_worked_values(tmp_path, capsys):
    out = _evaluate(tmp_path, "--lesions")
    rows = _rows(out)
    columns = ("lesion_dice", "lesion_hd95", "n_ref_lesions", "n_pred_lesions", "n_fp")
    expected = {"case_a": (THIRD, 748 / 3, 2, 2, 1), "case_b": (1.0, 0.0, 1, 1, 0)}
    for case, values in expected.items():
        for column, value in zip(columns, values):
            assert float(rows[case][column]) == pytest.approx(value, rel=1e-12), (case, column)
        for t in ("0", "0.1", "0.5"):
            want = 0.5 if case == "case_a" else 1.0
            assert float(rows[case][f"lesion_sensitivity@{t}"]) == want
            assert float(rows[case][f"lesion_f1@{t}"]) == want
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert tuple(header[: len(CSV_COLUMNS)]) == CSV_COLUMNS and header[len(CSV_COLUMNS)] == "lesion_dice"

    lesions = json.loads((out / "summary.json").read_text())["lesions"]["1"]
    assert lesions["name"] == "lesion" and lesions["n_cases"] == 2
    assert lesions["lesion_dice"]["mean"] == pytest.approx(2 / 3)
    assert lesions["lesion_dice"]["std"] == pytest.approx((1 - THIRD) / np.sqrt(2))
    assert lesions["lesion_hd95"]["mean"] == pytest.approx(748 / 6)
    assert (lesions["n_ref_lesions"], lesions["n_pred_lesions"], lesions["n_fp"]) == (3, 3, 1)
    assert lesions["fp_per_case"] == 0.5
    d0 = lesions["detection"][0]
    assert (d0["threshold"], d0["n_ref"], d0["n_detected"], d0["n_pred"], d0["n_pred_true"]) == (
        0,
        3,
        2,
        3,
        2,
    )
    assert d0["sensitivity"] == d0["precision"] == d0["f1"] == pytest.approx(2 / 3)
    strata = {s["band"]: (s["n_detected"], s["n_ref"]) for s in lesions["strata"] if s["threshold"] == 0}
    assert strata == {"<10": (0, 1), "10-100": (1, 1), "100-1000": (1, 1), ">=1000": (0, 0)}
    assert lesions["settings"]["dilation"] == 3 and lesions["froc"] is None

    per_lesion = json.loads((out / "lesions.json").read_text())
    a = per_lesion["cases"]["case_a"]["1"]
    assert sorted(r["volume"] for r in a["ref_lesions"]) == [8.0, 128.0]
    assert sorted((p["volume"], bool(p["matched"])) for p in a["pred_lesions"]) == [
        (16.0, False),
        (128.0, True),
    ]
    settings = json.loads((out / "evaluation.json").read_text())["lesions"]
    assert settings["dilation"] == 3 and settings["probabilities_dir"] is None
    stdout = capsys.readouterr().out
    assert "| lesion (1) | 0.667 ± 0.471 | 124.67 ± 176.31 | 3 | 0.50 | 0.667 / 0.667 |" in stdout


def test_lesion_options_reach_the_settings(tmp_path):
    out = _evaluate(tmp_path, "--lesions", "--lesion-min-volume", "10", "--iou-thresholds", "0.2")
    rows = _rows(out)
    # the 8 mm³ lesion is left out: case_a has one lesion (found) and one false positive
    assert float(rows["case_a"]["lesion_dice"]) == 0.5
    assert float(rows["case_a"]["lesion_hd95"]) == 187.0
    assert float(rows["case_a"]["n_ref_lesions"]) == 1
    assert float(rows["case_a"]["lesion_f1@0.2"]) == pytest.approx(2 / 3)  # sensitivity 1, precision 1/2
    assert "lesion_f1@0" not in rows["case_a"]
    out = _evaluate(tmp_path, "--lesions", "--lesion-preset", "MET", "--lesion-dilation", "2", out="met")
    settings = json.loads((out / "evaluation.json").read_text())["lesions"]
    assert (settings["dilation"], settings["min_volume"]) == (2, 2.0)


def test_froc_from_the_probability_maps(tmp_path):
    _, _, prob = write_lesion_cases(tmp_path / "data")
    out = _evaluate(tmp_path, "--lesions", "--probabilities", str(prob))
    froc = json.loads((out / "summary.json").read_text())["lesions"]["1"]["froc"]
    assert froc["score"] == pytest.approx(19 / 21)
    assert froc["sensitivities"] == pytest.approx([2 / 3, 2 / 3, 1, 1, 1, 1, 1])
    points = [v for p in froc["points"] for v in (p["threshold"], p["fp_per_case"], p["sensitivity"])]
    assert points == pytest.approx([0.9, 0, THIRD, 0.8, 0, 2 / 3, 0.6, 0.5, 2 / 3, 0.3, 0.5, 1], abs=1e-7)
    candidates = json.loads((out / "lesions.json").read_text())["cases"]["case_a"]["1"]["froc_candidates"]
    assert sorted(candidates["scores"]) == pytest.approx([0.3, 0.6, 0.9])
    assert json.loads((out / "evaluation.json").read_text())["lesions"]["froc_threshold"] == 0.1


def test_without_lesions_the_outputs_do_not_change(tmp_path, capsys):
    plain = _evaluate(tmp_path, out="plain")
    plain_stdout = capsys.readouterr().out
    lesions = _evaluate(tmp_path, "--lesions", out="lesions")
    lesion_stdout = capsys.readouterr().out
    assert sorted(p.name for p in plain.iterdir()) == [
        "boundary_error.json",
        "evaluation.json",
        "metrics.csv",
        "summary.json",
    ]
    assert (lesions / "lesions.json").is_file()
    plain_lines = (plain / "metrics.csv").read_text().splitlines()
    assert plain_lines[0] == ",".join(CSV_COLUMNS)
    for a, b in zip(plain_lines, (lesions / "metrics.csv").read_text().splitlines(), strict=True):
        assert b.split(",")[: len(CSV_COLUMNS)] == a.split(",")
    summary = json.loads((lesions / "summary.json").read_text())
    assert summary.pop("lesions") and summary == json.loads((plain / "summary.json").read_text())
    settings = [json.loads((d / "evaluation.json").read_text()) for d in (plain, lesions)]
    assert settings[1].pop("lesions") and "lesions" not in settings[0]
    for s in settings:
        s.pop("created")
    assert settings[0] == settings[1]
    table = plain_stdout[: plain_stdout.index("- results written to")]
    assert lesion_stdout.startswith(table) and "lesion Dice" not in plain_stdout


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (["--lesions", "--lesion-dilation", "1.5"], ["--lesion-dilation", "whole number"]),
        (["--lesions", "--lesion-min-volume", "-1"], ["--lesion-min-volume must be >= 0"]),
        (["--lesions", "--iou-thresholds", "0.5,0.1"], ["--iou-thresholds", "increasing"]),
        (["--lesions", "--iou-thresholds", "1"], ["--iou-thresholds", "[0, 1)"]),
        (["--lesions", "--size-bands", "ten"], ["--size-bands", "'ten'"]),
        (["--lesions", "--lesion-preset", "LUNG"], ["unknown BraTS 2023 challenge 'LUNG'"]),
        (["--lesion-dilation", "1"], ["--lesion-dilation needs --lesions"]),
        (["--lesions", "--probabilities", "p", "--froc-threshold", "0"], ["FROC candidate threshold"]),
    ],
)
def test_bad_lesion_options_are_refused_in_one_line(tmp_path, capsys, options, needles):
    pred, ref, _ = write_lesion_cases(tmp_path)
    code = main(["evaluate", "--pred", str(pred), "--ref", str(ref), *options])
    assert code == ConfigError.exit_code
    one_error_line(capsys, "medseg evaluate: error:", *needles)


def test_a_case_without_probability_map_is_refused(tmp_path, capsys):
    pred, ref, prob = write_lesion_cases(tmp_path)
    (prob / "case_b_probabilities.nii.gz").unlink()
    code = main(
        ["evaluate", "--pred", str(pred), "--ref", str(ref), "--lesions", "--probabilities", str(prob)]
    )
    assert code == InputNotFoundError.exit_code
    one_error_line(capsys, "1 cases have no probability map", "case_b")
