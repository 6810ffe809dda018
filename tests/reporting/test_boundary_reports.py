"""The error-against-distance curve and the pooled IoU in ``medseg compare`` and ``medseg report``."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil

import numpy as np
import pytest

from medseg.reporting.compare import compare_runs
from medseg.reporting.report import build_report
from tests.reporting.conftest import color_mask, decode_png
from tests.reporting.test_report import _parse

RUN_COLOURS = ("#1f77b4", "#ff7f0e")


def test_compare_overlays_the_error_curves_of_every_run(evaluation_dir, second_evaluation_dir, tmp_path):
    out = tmp_path / "cmp"
    comparison = compare_runs([evaluation_dir, second_evaluation_dir], output=out)
    assert set(comparison.error_curves) == set(comparison.names)
    png = (out / "compare_error_curve.png").read_bytes()
    rgb = decode_png(png)
    assert rgb.shape[1] > 3 * rgb.shape[0]  # head, tail and all classes side by side
    for colour in RUN_COLOURS:  # one line per run
        assert color_mask(rgb, colour, tol=30).sum() > 200
    md = (out / "compare.md").read_text()
    assert "![error against distance](compare_error_curve.png)" in md
    html = (out / "compare.html").read_text()
    figure = re.search(r'<figure id="error-curve"><img src="data:image/png;base64,([^"]+)"', html)
    assert figure and base64.b64decode(figure.group(1)) == png
    # the pooled IoU table: each run's summary.json values, and their mean over the classes
    for n, folder in enumerate((evaluation_dir, second_evaluation_dir)):
        pooled = json.loads((folder / "summary.json").read_text())["miou"]["classes"]
        values = [pooled[k]["iou_pooled"] for k in ("1", "2")]
        row = next(line for line in md.splitlines() if line.startswith("| head |") and "±" not in line)
        assert row.split("|")[2 + n].strip() == f"{values[0]:.4f}"
        row = next(line for line in md.splitlines() if line.startswith("| mean over classes (mIoU) |"))
        assert row.split("|")[2 + n].strip() == f"{np.mean(values):.4f}"


def test_no_overlay_unless_every_run_has_the_curve_over_the_same_bins(
    evaluation_dir, second_evaluation_dir, tmp_path, caplog
):
    old = tmp_path / "old"
    shutil.copytree(evaluation_dir, old)
    (old / "boundary_error.json").unlink()
    out = tmp_path / "cmp_old"
    comparison = compare_runs([old, second_evaluation_dir], output=out)
    assert comparison.error_curves is None and not (out / "compare_error_curve.png").exists()
    assert "compare_error_curve" not in (out / "compare.md").read_text()
    assert 'id="error-curve"' not in (out / "compare.html").read_text()
    other = tmp_path / "other_bins"
    shutil.copytree(evaluation_dir, other)
    data = json.loads((other / "boundary_error.json").read_text())
    data["bins"] = [0.0, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 30.0]
    (other / "boundary_error.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="medseg.reporting.boundary_error"):
        assert compare_runs([other, second_evaluation_dir]).error_curves is None
    assert "different bins" in caplog.text


def test_report_draws_the_error_curve_and_lists_the_pooled_rates(evaluation_dir, tmp_path):
    text, page = _parse(build_report(evaluation_dir, tmp_path / "r.html", n_cases=0, viewer=False))
    assert "Error against distance from the reference boundary" in page.headings
    assert len(page.images) == 1 and decode_png(base64.b64decode(page.images[0].split(",", 1)[1])).ndim == 3
    data = json.loads((evaluation_dir / "boundary_error.json").read_text())
    section = text[text.index("Error against distance") :]
    cells = re.findall(r'<td data-v="([^"]+)">', section)
    entries = [data["classes"]["1"], data["classes"]["2"], data["all_classes"]]
    expected = [np.nan if v is None else v for e in entries for v in e["both"]["error_rate"]]
    assert [float(c) for c in cells] == pytest.approx(expected, nan_ok=True)
    assert "IoU pooled" in text and "dataset-level mIoU" in text
