"""The lesion-wise results in the HTML report and in ``medseg compare`` (cases of test_lesion_workflow)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pytest

from medseg.evaluation import evaluate
from medseg.reporting.compare import COMPARED_METRICS, compare_runs
from medseg.reporting.report import build_report
from tests.evaluation.test_lesion_workflow import write_lesion_cases
from tests.reporting.conftest import decode_png
from tests.reporting.test_report import _parse


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_PROGRESS", "1")


def _lesion_evaluation(root: Path, perfect: bool = False, froc: bool = True) -> Path:
    pred, ref, prob = write_lesion_cases(root, perfect=perfect)
    out = root / "evaluation"
    evaluate(pred, ref, labels="1:lesion", output=out, lesions=True, probabilities=prob if froc else None)
    return out


def _cells(text: str, heading: str) -> list[list[str]]:
    """The text of the cells of the first table after ``<h3>heading``, row by row."""
    part = text[text.index(f"<h3>{heading}") :]
    body = part[part.index("<tbody>") : part.index("</tbody>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in row] for row in cells]


def test_report_has_the_lesions_section_and_the_froc_figure(tmp_path):
    evaluation = _lesion_evaluation(tmp_path)
    text, page = _parse(build_report(evaluation, tmp_path / "r.html", n_cases=0, viewer=False))
    order = ["Evaluation", "Lesions", "Per-case metrics"]
    assert [h for h in page.headings if h in order] == order
    for heading in ("Detection", "Sensitivity by lesion size", "FROC", "Per-case lesion results"):
        assert heading in page.headings
    scores = _cells(text, "Lesion-wise Dice and HD95")
    assert scores[0][:5] == ["lesion (1)", "2", "3", "3", "0.50"]
    assert scores[0][5].startswith("0.667 ± 0.471") and scores[0][6].startswith("124.67 ± 176.31")
    detection = _cells(text, "Detection")
    assert [row[1] for row in detection] == ["0", "0.1", "0.5"]
    assert detection[0][2:] == ["3", "2", "0.667", "3", "2", "0.667", "0.667", "0.50"]
    strata = {row[1]: row[3] for row in _cells(text, "Sensitivity by lesion size")}
    assert strata == {
        "<10": "0.000 (0/1)",
        "10-100": "1.000 (1/1)",
        "100-1000": "1.000 (1/1)",
        ">=1000": "n/a",
    }
    froc = _cells(text, "FROC")
    assert froc[0][:3] == ["lesion (1)", "3", "0.905"]
    per_case = {row[0]: row for row in _cells(text, "Per-case lesion results")}
    assert per_case["case_a"][2:7] == ["0.3333", "249.33", "2", "2", "1"]
    assert any(c.startswith("FROC from the probability maps") for c in page.captions)
    assert len(page.images) == 2  # FROC, then the error against distance (boundary_error.json)
    assert decode_png(base64.b64decode(page.images[0].split(",", 1)[1])).shape == (420, 760, 3)


def test_report_without_froc_or_lesions(tmp_path, evaluation_dir):
    text, page = _parse(
        build_report(_lesion_evaluation(tmp_path, froc=False), tmp_path / "r.html", 0, viewer=False)
    )
    assert "Lesions" in page.headings and "FROC" not in page.headings and len(page.images) == 1
    text, page = _parse(build_report(evaluation_dir, tmp_path / "plain.html", 0, viewer=False))
    assert "Lesions" not in page.headings and "lesion" not in text.lower()


def test_compare_pairs_the_lesion_metrics(tmp_path, evaluation_dir):
    a = _lesion_evaluation(tmp_path / "a")
    b = _lesion_evaluation(tmp_path / "b", perfect=True)
    comparison = compare_runs([a, b], output=tmp_path / "cmp")
    rows = {r.metric: r for r in comparison.rows}
    assert list(rows) == [*COMPARED_METRICS, "lesion_dice", "lesion_hd95", "lesion_f1@0"]
    # per case: lesion Dice 1/3 -> 1 and 1 -> 1, HD95 748/3 -> 0 and 0 -> 0, F1 0.5 -> 1 and 1 -> 1
    assert rows["lesion_dice"].stats[0]["mean"] == pytest.approx(2 / 3)
    assert rows["lesion_dice"].diffs[1]["mean_diff"] == pytest.approx(1 / 3)
    assert rows["lesion_hd95"].diffs[1]["mean_diff"] == pytest.approx(-748 / 6)
    assert rows["lesion_f1@0"].diffs[1]["mean_diff"] == pytest.approx(0.25)
    assert rows["lesion_f1@0"].diffs[1]["n_pairs"] == 2
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| lesion | lesion Dice ↑ | 0.667 ± 0.471 | 1.000 ± 0.000 | +0.3333" in md
    assert "| lesion | lesion HD95 (mm) ↓ |" in md and "| lesion | lesion F1 @IoU>0 ↑ |" in md
    assert "Lesion rows:" in md and "lesion_f1@0" in (tmp_path / "cmp" / "compare.csv").read_text()
    # an evaluation without lesion results: no lesion row
    plain = compare_runs([evaluation_dir, evaluation_dir])
    assert not [r for r in plain.rows if r.metric.startswith("lesion")]
