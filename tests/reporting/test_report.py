"""``build_report``: one self-contained HTML file for an evaluation folder or a run folder."""

from __future__ import annotations

import base64
import csv
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import InputNotFoundError
from medseg.reporting.report import build_report
from medseg.reporting.viewer import niivue_script
from tests.reporting.conftest import decode_png, write_run_metrics


class _Page(HTMLParser):
    """Collects images, links, scripts and the rows of the per-case table."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.urls: list[str] = []
        self.headings: list[str] = []
        self.case_rows: list[list[str]] = []
        self.captions: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "action", "data"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self._table = a.get("id")
        if tag == "tr" and self._table == "cases":
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = []
        if tag in ("h2", "h3"):
            self._heading = []
        if tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row:
            self.case_rows.append(self._row)
            self._row = None
        if tag == "table":
            self._table = None
        if tag in ("h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None
        if tag == "figcaption" and self._caption is not None:
            self.captions.append("".join(self._caption).strip())
            self._caption = None

    def handle_data(self, data):
        for part in (self._cell, self._heading, self._caption):
            if part is not None:
                part.append(data)


def _parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def _case_means(evaluation_dir: Path) -> dict[str, float]:
    per_case: dict[str, list[float]] = {}
    with (evaluation_dir / "metrics.csv").open() as fh:
        for rec in csv.DictReader(fh):
            per_case.setdefault(rec["case"], []).append(float(rec["dice"]))
    return {c: float(np.mean(v)) for c, v in per_case.items()}


def _assert_self_contained(text: str, page: _Page) -> None:
    assert page.urls and all(u.startswith("data:image/png;base64,") for u in page.urls), page.urls
    # the vendored NiiVue bundle is inlined once; its comments name web pages, the rest of the page none
    bundle = niivue_script()
    assert text.count(bundle) == 1
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text.replace(bundle, ""))
    assert "@import" not in text and "<link" not in text
    for src in page.images:
        rgb = decode_png(base64.b64decode(src.split(",", 1)[1]))
        assert rgb.shape[0] > 100 and rgb.shape[1] > 100


def test_evaluation_report_is_self_contained_with_table_and_worst_best(evaluation_dir, tmp_path):
    out = build_report(evaluation_dir, tmp_path / "r.html")
    text, page = _parse(out)
    _assert_self_contained(text, page)
    # results first: summary, viewer, worst and best cases, then the per-case table
    order = ["Evaluation", "Viewer", "Worst and best cases", "Per-case metrics"]
    assert [h for h in page.headings if h in order] == order
    assert page.headings[1].startswith("Summary per class")
    assert "<h1>medseg report: evaluation</h1>" in text
    # per-case table: one row per case and class, with the values of metrics.csv
    with (evaluation_dir / "metrics.csv").open() as fh:
        records = list(csv.DictReader(fh))
    assert len(page.case_rows) == len(records) == 14
    for row, rec in zip(page.case_rows, records):
        assert row[0] == rec["case"] and row[1] == rec["class_name"]
        assert float(row[2]) == pytest.approx(float(rec["dice"]), abs=5e-5)
    assert 'class="sortable" id="cases"' in text and "data-v=" in text
    # worst and best 3 by mean Dice, each with an overlay
    ranked = sorted(_case_means(evaluation_dir).items(), key=lambda kv: kv[1])
    worst, best = [c for c, _ in ranked[:3]], [c for c, _ in ranked[::-1][:3]]
    assert "case_001" in worst  # the case shifted on purpose is among the worst
    assert [c.split(":")[0] for c in page.captions[:-1]] == worst + best
    assert page.captions[-1].startswith("Misclassification rate per distance bin")  # boundary_error.json
    assert len(page.images) == 7
    assert "Worst 3" in page.headings and "Best 3" in page.headings


def test_run_report_puts_results_first_and_folds_the_configuration(evaluation_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = "name: hippocampus_unet3d\nmodel:\n  name: unet  # <b>not markup</b>\n"
    (run / "config.yaml").write_text(config)
    (run / "plan.json").write_text('{"steps": [{"name": "Reorient", "from": "LPS"}]}')
    write_run_metrics(run / "metrics.csv")
    shutil.copytree(evaluation_dir, run / "evaluation")
    out = build_report(run)
    assert out == run / "report.html"
    text, page = _parse(out)
    _assert_self_contained(text, page)
    # the title names the pipeline, not the folder "run"
    assert "<title>medseg report: hippocampus_unet3d</title>" in text
    assert "<h1>medseg report: hippocampus_unet3d</h1>" in text
    top = [
        "Evaluation",
        "Viewer",
        "Worst and best cases",
        "Per-case metrics",
        "Training curves",
        "Configuration",
    ]
    assert [h for h in page.headings if h in top] == top
    # the configuration and the plan are folded away, escaped, after everything else
    configuration = text[text.index("<h2>Configuration</h2>") :]
    assert configuration.startswith("<h2>Configuration</h2><details><summary>Configuration (config.yaml)")
    assert "&lt;b&gt;not markup&lt;/b&gt;" in configuration and "Reorient" in configuration
    assert text.count("<pre>") == 2 and text.count("<details>") == 2
    assert len(page.images) == 8  # curves + 6 overlays + error against distance
    assert decode_png((run / "curves.png").read_bytes()).shape == (420, 1300, 3)  # refreshed in the run
    # the evaluation folder of the run gets the run's title too
    assert "<h1>medseg report: hippocampus_unet3d</h1>" in build_report(run / "evaluation").read_text()


def test_run_trained_without_validation_has_no_empty_panel(tmp_path):
    run = tmp_path / "run"
    write_run_metrics(run / "metrics.csv", n_epochs=6, val_every=1000)  # no validation value at all
    (run / "config.yaml").write_text("name: no_validation\n")
    text, page = _parse(build_report(run))
    assert "no validation" not in text.replace("trained without validation", "")
    assert "Loss and learning rate (trained without validation)" in text
    curves = decode_png(base64.b64decode(page.images[0].split(",", 1)[1]))
    assert curves.shape == (420, 866, 3)  # two panels: loss and learning rate
    assert (run / "curves.png").is_file()
    assert "Viewer" not in page.headings and "niivue" not in text.lower()  # no evaluation: no viewer


def test_run_without_evaluation_and_missing_files(evaluation_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_run_metrics(run / "metrics.csv")
    text, page = _parse(build_report(run))
    assert "no evaluation/ folder yet" in text and len(page.images) == 1
    # an evaluation whose label files were moved away still gives a report, with a note per case
    moved = tmp_path / "moved"
    shutil.copytree(evaluation_dir.parent, moved)
    shutil.rmtree(moved / "pred")
    csv_text = (
        (moved / "evaluation" / "metrics.csv").read_text().replace(str(evaluation_dir.parent), str(moved))
    )
    (moved / "evaluation" / "metrics.csv").write_text(csv_text)
    text, page = _parse(build_report(moved / "evaluation"))
    assert len(page.images) == 1 and text.count("no overlay (") == 6  # only the error curve


def test_report_errors(tmp_path):
    with pytest.raises(InputNotFoundError, match="is not a folder"):
        build_report(tmp_path / "missing")
    (tmp_path / "random").mkdir()
    with pytest.raises(InputNotFoundError, match="neither a run folder"):
        build_report(tmp_path / "random")
