"""Lesion-wise results per region in the HTML report and in ``medseg compare`` (the BraTS-like
cases of tests/evaluation/test_region_lesions.py: enhancing tumour lesion-wise Dice 0.4 in case_a,
1 in case_b)."""

from __future__ import annotations

import pytest

from medseg.reporting.compare import COMPARED_METRICS, compare_runs
from medseg.reporting.report import build_report
from tests.evaluation.test_region_lesions import region_lesion_evaluation
from tests.reporting.test_lesion_report import _cells
from tests.reporting.test_report import _parse


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_PROGRESS", "1")


def test_report_shows_the_region_lesion_rows(tmp_path):
    evaluation = region_lesion_evaluation(tmp_path)
    text, page = _parse(build_report(evaluation, tmp_path / "r.html", n_cases=0, viewer=False))
    assert "Lesions" in page.headings and "FROC" not in page.headings
    assert "<th>class / region</th>" in text
    scores = {row[0]: row for row in _cells(text, "Lesion-wise Dice and HD95")}
    assert list(scores) == [
        "label_1 (1)",
        "label_2 (2)",
        "label_4 (4)",
        "whole_tumor {1, 2, 4}",
        "tumor_core {1, 4}",
        "enhancing_tumor {4}",
    ]
    et = scores["enhancing_tumor {4}"]
    assert et[1:4] == ["2", "4", "3"]  # cases, lesions, predicted components
    assert et[5].startswith("0.700 ± 0.424")
    detection = [row for row in _cells(text, "Detection") if row[0] == "enhancing_tumor {4}"]
    assert [row[1] for row in detection] == ["0", "0.1", "0.5"]
    per_case = [row for row in _cells(text, "Per-case lesion results") if row[1] == "enhancing_tumor {4}"]
    assert [(row[0], row[2]) for row in per_case] == [("case_a", "0.4000"), ("case_b", "1.0000")]


def test_compare_of_region_lesion_evaluations_keeps_the_class_rows(tmp_path):
    a = region_lesion_evaluation(tmp_path / "a")
    comparison = compare_runs([a, a])
    metrics = list(dict.fromkeys(r.metric for r in comparison.rows))
    assert metrics == [*COMPARED_METRICS, "lesion_dice", "lesion_hd95", "lesion_f1@0"]
    assert {r.class_name for r in comparison.rows} == {"label_1", "label_2", "label_4", "all classes"}
