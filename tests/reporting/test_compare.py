"""``compare_runs``: side-by-side statistics and paired per-case differences against the first run."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from scipy import stats

from medseg.errors import InputNotFoundError, MedsegError
from medseg.reporting.compare import COMPARED_METRICS, compare_runs, paired_difference


def _column(evaluation_dir, metric, class_id=None):
    values: dict[str, list[float]] = {}
    with (evaluation_dir / "metrics.csv").open() as fh:
        for rec in csv.DictReader(fh):
            if class_id is None or int(rec["class_id"]) == class_id:
                values.setdefault(rec["case"], []).append(float(rec[metric]))
    return {case: float(np.mean(v)) for case, v in values.items()}


def test_paired_differences_and_wilcoxon_against_the_csv_files(
    evaluation_dir, second_evaluation_dir, tmp_path
):
    comparison = compare_runs([evaluation_dir, second_evaluation_dir], output=tmp_path / "cmp")
    # an "evaluation" folder is named after the folder holding it
    assert comparison.names == [evaluation_dir.parent.name, second_evaluation_dir.parent.name]
    rows = {(r.class_name, r.metric): r for r in comparison.rows}
    # head, tail, all classes x Dice, IoU, boundary IoU, HD95, ASSD, NSD
    assert len(comparison.rows) == 3 * len(COMPARED_METRICS) == 3 * 6
    for class_name, class_id in (("head", 1), ("tail", 2), ("all classes", None)):
        for metric in COMPARED_METRICS:
            a = _column(evaluation_dir, metric, class_id)
            b = _column(second_evaluation_dir, metric, class_id)
            cases = sorted(a)
            d = np.array([b[c] - a[c] for c in cases])
            row = rows[(class_name, metric)]
            assert row.stats[0]["mean"] == pytest.approx(np.mean([a[c] for c in cases]), rel=1e-12)
            assert row.stats[1]["std"] == pytest.approx(np.std([b[c] for c in cases], ddof=1), rel=1e-12)
            assert row.diffs[0] is None
            assert row.diffs[1]["n_pairs"] == 7
            assert row.diffs[1]["mean_diff"] == pytest.approx(d.mean(), rel=1e-9, abs=1e-12)
            assert row.diffs[1]["p_value"] == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-9)
    # the second prediction is closer to the references: Dice up, HD95 down
    assert rows[("all classes", "dice")].diffs[1]["mean_diff"] > 0
    assert rows[("all classes", "hd95")].diffs[1]["mean_diff"] < 0
    out = tmp_path / "cmp"
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.csv",
        "compare.html",
        "compare.md",
        "compare.png",
        "compare_error_curve.png",
    ]
    md = (out / "compare.md").read_text()
    assert md.count("**HD95 (mm) ↓**") == 3 and md.count("**NSD ↑**") == 3 and "| Dice ↑ |" in md
    assert md.count("**") == 2 * 12  # only boundary metrics are bold (4 per class group)
    with (out / "compare.csv").open() as fh:
        records = list(csv.DictReader(fh))
    assert len(records) == 18 * 2
    hd = next(
        r
        for r in records
        if r["class_name"] == "head" and r["metric"] == "hd95" and r["run"] == comparison.names[1]
    )
    assert float(hd["mean_diff_vs_first"]) == pytest.approx(rows[("head", "hd95")].diffs[1]["mean_diff"])
    assert hd["boundary_metric"] == "1"
    html = (out / "compare.html").read_text()
    assert html.count('<tr class="boundary">') == 12 and "https://" not in html and "http://" not in html


def test_infinite_distances_are_left_out_of_the_pairs(evaluation_dir, tmp_path):
    run_b = tmp_path / "b"
    shutil.copytree(evaluation_dir, run_b)
    path = run_b / "metrics.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    first = lines[1].split(",")
    first[header.index("hd95")] = "inf"
    lines[1] = ",".join(first)
    path.write_text("\n".join(lines) + "\n")
    comparison = compare_runs([evaluation_dir, run_b])
    row = next(r for r in comparison.rows if r.class_name == "head" and r.metric == "hd95")
    assert row.diffs[1]["n_pairs"] == 6 and row.diffs[1]["n_excluded"] == 1
    assert row.stats[1]["n_nonfinite"] == 1
    assert "[1 pairs with inf left out]" in comparison.to_markdown()


def test_paired_difference_edge_cases():
    assert paired_difference([0.5, 0.6], [0.5, 0.6]) == {
        "n_pairs": 2,
        "n_excluded": 0,
        "mean_diff": 0.0,
        "p_value": 1.0,
    }
    assert paired_difference([0.5], [0.7])["p_value"] is None
    assert paired_difference([], [])["mean_diff"] is None
    d = paired_difference([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.5, 2.1, 3.9, 4.2, 5.8, 6.05])
    assert d["mean_diff"] == pytest.approx(np.mean([0.5, 0.1, 0.9, 0.2, 0.8, 0.05]))
    assert d["p_value"] == pytest.approx(0.03125)  # exact test: all 6 differences positive, 2 / 2**6


def test_run_folders_and_errors(evaluation_dir, second_evaluation_dir, tmp_path):
    run = tmp_path / "unet_run"
    run.mkdir()
    (run / "config.yaml").write_text("model: unet\n")
    shutil.copytree(evaluation_dir, run / "evaluation")
    comparison = compare_runs([run, second_evaluation_dir])
    assert comparison.names == ["unet_run", second_evaluation_dir.parent.name]
    twin = tmp_path / "twin" / "unet_run"
    shutil.copytree(run, twin)
    assert compare_runs([run, twin]).names == ["unet_run", "unet_run_2"]  # same names made unique
    with pytest.raises(MedsegError, match="at least two runs"):
        compare_runs([run])
    empty_run = tmp_path / "not_evaluated"
    empty_run.mkdir()
    with pytest.raises(InputNotFoundError, match="evaluate it first"):
        compare_runs([run, empty_run])
    for key, message in (("nsd_tolerance_mm", "different NSD tolerances"), ("boundary_band_mm", "bands")):
        other = tmp_path / key
        shutil.copytree(evaluation_dir, other)
        settings = json.loads((other / "evaluation.json").read_text())
        settings[key] = 5.0
        (other / "evaluation.json").write_text(json.dumps(settings))
        with pytest.raises(MedsegError, match=message):
            compare_runs([run, other])
