"""``medseg evaluate --lesions --regions``: lesion-wise Dice per BraTS region on a hand-made case.

Labels 1 necrosis, 2 oedema, 4 enhancing tumour on a 24x24x16 grid of 1 mm voxels (a voxel is
1 mm³); default lesion settings (dilation 3, so lesions more than 6 voxels apart stay apart).
Regions: whole_tumor {1, 2, 4}, tumor_core {1, 4}, enhancing_tumor {4}.

Reference of ``case_a``: oedema in [2:22, 2:22, 4:12] (20 x 20 x 8 = 3200 voxels), enhancing
lesion A at [4:7, 4:7, 6:9] (27 voxels) with necrosis on top of it at [4:7, 4:7, 9] (9 voxels),
enhancing lesion B at [15:18, 15:18, 6:9] (27 voxels), 8 voxels from A along x and y.

Prediction of ``case_a``: the same, except that

* the top oedema layer z = 11 (20 x 20 = 400 voxels) is missed,
* the top layer z = 8 of lesion A is predicted as oedema (A predicted with 18 of its 27 voxels),
* lesion B is predicted as oedema (the enhancing lesion B is missed, the whole tumour is not).

Worked values of ``case_a``:

* whole_tumor: one lesion of 3200 voxels, found by one component of 2800 voxels inside it:
  voxel Dice 2 x 2800 / (2800 + 3200) = 14/15, and lesion-wise Dice the same 14/15 (one lesion,
  no false positive);
* enhancing_tumor: two lesions, A predicted with 18 voxels (Dice 2 x 18 / (18 + 27) = 0.8) and B
  missed (Dice 0), no false positive: lesion-wise Dice (0.8 + 0) / (2 + 0) = 0.4, lesion-wise
  HD95 (HD95_A + 374) / 2 mm; voxel Dice 2 x 18 / (18 + 54) = 0.5;
* tumor_core: lesion A + necrosis (36 voxels) found by two components (the 18 voxels of A and the
  necrosis, split by the oedema layer z = 8) whose union has 27 voxels, all inside it: Dice
  2 x 27 / (27 + 36) = 6/7; B missed: lesion-wise Dice (6/7 + 0) / 2 = 3/7.

``case_b`` is predicted perfectly (every lesion-wise Dice 1), so over the two cases the enhancing
tumour's lesion-wise Dice has mean 0.7 and sample sd 0.6 / sqrt(2) = 0.4243.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medseg.cli.main import main
from medseg.evaluation import evaluate
from medseg.evaluation.lesion_results import lesion_columns, read_lesion_values
from medseg.evaluation.lesions import LesionSettings, evaluate_lesions
from medseg.evaluation.region_lesions import (
    measure_region_lesions,
    read_region_lesion_values,
    region_lesion_markdown,
)
from medseg.evaluation.regions_eval import RegionLesionEvaluationResult, load_regions
from medseg.evaluation.results import CSV_COLUMNS, METRIC_COLUMNS, load_evaluation
from tests.evaluation.synthetic import write_labels

AFFINE = np.eye(4)
REGIONS = [
    {"name": "whole_tumor", "labels": [1, 2, 4], "value": 2},
    {"name": "tumor_core", "labels": [1, 4], "value": 1},
    {"name": "enhancing_tumor", "labels": [4], "value": 4},
]
LESION_A, LESION_B = np.s_[4:7, 4:7, 6:9], np.s_[15:18, 15:18, 6:9]


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_PROGRESS", "1")


def brats_lesion_pair() -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, reference)`` of case_a (see the module docstring)."""
    ref = np.zeros((24, 24, 16), np.uint8)
    ref[2:22, 2:22, 4:12] = 2
    ref[LESION_A] = ref[LESION_B] = 4
    ref[4:7, 4:7, 9] = 1
    pred = ref.copy()
    pred[2:22, 2:22, 11] = 0
    pred[4:7, 4:7, 8] = 2
    pred[LESION_B] = 2
    return pred, ref


def write_cases(root: Path) -> tuple[Path, Path]:
    pred, ref = brats_lesion_pair()
    for case, p, r in (("case_a", pred, ref), ("case_b", ref, ref)):
        write_labels(root / "ref" / f"{case}.nii.gz", r, AFFINE)
        write_labels(root / "pred" / f"{case}.nii.gz", p, AFFINE)
    return root / "pred", root / "ref"


def region_lesion_evaluation(root: Path) -> Path:
    """The evaluation folder of case_a and case_b with lesions and regions."""
    pred, ref = write_cases(root)
    evaluate(pred, ref, output=root / "eval", lesions=True, regions=REGIONS)
    return root / "eval"


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as fh:
        return {rec["case"]: rec for rec in csv.DictReader(fh)}  # one row per case (the last class)


def _hd95_of_lesion_a() -> float:
    pred, ref = brats_lesion_pair()
    result = evaluate_lesions(pred[LESION_A] == 4, ref[LESION_A] == 4, (1.0, 1.0, 1.0))
    return result.lesion_hd95


# -- one case ----------------------------------------------------------------------------------
def test_each_region_is_scored_lesion_by_lesion():
    pred, ref = brats_lesion_pair()
    r = measure_region_lesions(pred, ref, (1.0, 1.0, 1.0), load_regions(REGIONS), LesionSettings())
    assert list(r) == ["whole_tumor", "tumor_core", "enhancing_tumor"]
    et = r["enhancing_tumor"]
    assert (et.n_ref, et.n_pred, et.n_fp) == (2, 1, 0)
    assert et.lesion_dice == pytest.approx(0.4)  # (0.8 + 0) / 2
    assert et.lesion_hd95 == pytest.approx((_hd95_of_lesion_a() + 374.0) / 2)
    wt = r["whole_tumor"]
    assert (wt.n_ref, wt.n_pred, wt.n_fp) == (1, 1, 0)
    assert wt.lesion_dice == pytest.approx(14 / 15)  # one lesion: its voxel Dice
    tc = r["tumor_core"]
    assert (tc.n_ref, tc.n_pred) == (2, 2)
    assert tc.lesion_dice == pytest.approx(3 / 7)  # (6/7 + 0) / 2


# -- the evaluation folder ---------------------------------------------------------------------
def test_columns_summary_and_lesions_json_have_the_worked_values(tmp_path):
    out = region_lesion_evaluation(tmp_path)
    rows = _rows(out)
    header = list(next(iter(rows.values())))
    lesion = list(lesion_columns(LesionSettings()))
    voxel = [f"region:{r['name']}:{m}" for r in REGIONS for m in METRIC_COLUMNS]
    region_lesion = [f"region:{r['name']}:{c}" for r in REGIONS for c in lesion]
    assert header == [*CSV_COLUMNS, *lesion, *voxel, *region_lesion]
    a, b = rows["case_a"], rows["case_b"]
    assert float(a["region:enhancing_tumor:lesion_dice"]) == pytest.approx(0.4)
    assert float(a["region:enhancing_tumor:dice"]) == pytest.approx(0.5)  # voxel Dice 2 x 18 / 72
    assert float(a["region:enhancing_tumor:lesion_sensitivity@0"]) == 0.5
    assert (a["region:enhancing_tumor:n_ref_lesions"], a["region:enhancing_tumor:n_fp"]) == ("2", "0")
    wt_lesion, wt_voxel = float(a["region:whole_tumor:lesion_dice"]), float(a["region:whole_tumor:dice"])
    assert wt_lesion == pytest.approx(14 / 15) and wt_lesion == pytest.approx(wt_voxel)
    assert float(a["region:tumor_core:lesion_dice"]) == pytest.approx(3 / 7)
    assert float(b["region:enhancing_tumor:lesion_dice"]) == 1.0

    summary = json.loads((out / "summary.json").read_text())
    et = summary["regions"]["enhancing_tumor"]["lesions"]
    assert set(et) == set(summary["lesions"]["4"])  # the shape of a class's entry
    assert et["name"] == "enhancing_tumor" and et["n_cases"] == 2 and et["froc"] is None
    assert et["lesion_dice"]["mean"] == pytest.approx(0.7)
    assert et["lesion_dice"]["std"] == pytest.approx(0.6 / np.sqrt(2))
    assert (et["n_ref_lesions"], et["n_pred_lesions"], et["n_fp"]) == (4, 3, 0)
    assert summary["regions"]["enhancing_tumor"]["metrics"]["dice"]["mean"] == pytest.approx(0.75)

    per_lesion = json.loads((out / "lesions.json").read_text())
    assert set(per_lesion["cases"]["case_a"]) == {"1", "2", "4"}  # the classes, as before
    regions = per_lesion["regions"]
    assert regions["labels"] == {r["name"]: r["labels"] for r in REGIONS}
    et_a = regions["cases"]["case_a"]["enhancing_tumor"]
    assert sorted(r["volume"] for r in et_a["ref_lesions"]) == [27.0, 27.0]
    assert [p["volume"] for p in et_a["pred_lesions"]] == [18.0]


def test_load_evaluation_round_trips_and_readers_keep_classes_and_regions_apart(tmp_path):
    pred, ref = write_cases(tmp_path)
    result = evaluate(pred, ref, output=tmp_path / "eval", lesions=True, regions=REGIONS)
    assert isinstance(result, RegionLesionEvaluationResult)
    back = load_evaluation(tmp_path / "eval")
    assert [r.to_dict() for r in back.rows] == [r.to_dict() for r in result.rows]
    for name in ("whole_tumor", "tumor_core", "enhancing_tumor"):
        expected = json.loads(json.dumps(result.summary["regions"][name]["lesions"]))
        assert back.summary["regions"][name]["lesions"] == expected
    classes = read_lesion_values(tmp_path / "eval")
    assert not [c for c in classes if c.startswith("region:")]
    assert set(classes["lesion_dice"]) == {(c, k) for c in ("case_a", "case_b") for k in (1, 2, 4)}
    regions = read_region_lesion_values(tmp_path / "eval")
    assert set(regions) == {(c, r["name"]) for c in ("case_a", "case_b") for r in REGIONS}
    assert regions["case_a", "enhancing_tumor"]["lesion_dice"] == pytest.approx(0.4)


def test_the_printed_table_has_a_lesion_row_per_region(tmp_path, capsys):
    pred, ref = write_cases(tmp_path)
    dataset = tmp_path / "dataset.json"
    labels = {"background": 0, **{r["name"]: r["labels"] for r in REGIONS}}
    dataset.write_text(json.dumps({"labels": labels, "regions_class_order": [2, 1, 4]}))
    argv = ["evaluate", "--pred", str(pred), "--ref", str(ref), "--lesions", "--regions", str(dataset)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| region | lesion Dice | lesion HD95 (mm) | lesions | FP per case |" in printed
    assert "| enhancing_tumor {4} | 0.700 ± 0.424 |" in printed
    assert "| whole_tumor {1, 2, 4} | 0.967 ± 0.047 |" in printed  # (14/15 + 1) / 2, sd (1/15) / sqrt 2
    assert printed.index("| class | lesion Dice |") < printed.index("| region | lesion Dice |")
    assert region_lesion_markdown({}, load_regions(REGIONS)) == ""


def test_without_lesions_regions_have_no_lesion_results(tmp_path):
    pred, ref = write_cases(tmp_path)
    result = evaluate(pred, ref, output=tmp_path / "eval", regions=REGIONS)
    assert "lesions" not in result.summary["regions"]["whole_tumor"]
    header = list(next(iter(_rows(tmp_path / "eval").values())))
    assert not [c for c in header if "lesion" in c]
    assert not (tmp_path / "eval" / "lesions.json").exists()
