"""Boundary IoU, mIoU and boundary_error.json in ``evaluate`` / ``medseg evaluate`` and the summary."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from medseg.cli.main import main
from medseg.errors import ConfigError
from medseg.evaluation import evaluate, load_evaluation
from medseg.evaluation.boundary import DEFAULT_DISTANCE_BINS_MM, DistanceErrors, boundary_iou
from medseg.evaluation.metrics import compute_metrics
from medseg.evaluation.results import MetricRow, summarise
from medseg.io import read_volume
from tests.cli_checks import one_error_line
from tests.evaluation.synthetic import write_dataset


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("MEDSEG_NO_PROGRESS", "1")


def _strip(n_pred: int, n_ref: int, n_both: int, length: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """2D masks ``[1, length]``: ``n_pred`` and ``n_ref`` pixels sharing ``n_both``."""
    pred, ref = np.zeros((1, length), bool), np.zeros((1, length), bool)
    ref[0, :n_ref] = True
    pred[0, n_ref - n_both : n_ref - n_both + n_pred] = True
    return pred, ref


def test_mean_iou_per_case_and_pooled_on_a_worked_example():
    labels = {1: "small_then_large", 2: "only_in_a", 3: "never"}
    masks = {
        ("a", 1): _strip(10, 10, 5),  # IoU 5 / 15
        ("b", 1): _strip(100, 100, 90),  # IoU 90 / 110
        ("a", 2): _strip(4, 4, 4),  # IoU 1
        ("b", 2): _strip(0, 0, 0),  # both empty: IoU 1 by convention, nothing to pool
        ("a", 3): _strip(0, 0, 0),
        ("b", 3): _strip(0, 0, 0),
    }
    rows = []
    for (case, label), (p, r) in masks.items():
        rows.append(MetricRow.of(case, label, labels[label], compute_metrics(p, r, 1.0), 1.0, "", ""))
    miou = summarise(rows, labels, "px2")["miou"]
    c = miou["classes"]
    assert c["1"]["mean_iou_per_case"] == pytest.approx((5 / 15 + 90 / 110) / 2)
    assert c["1"]["iou_pooled"] == pytest.approx((5 + 90) / (15 + 110))  # 0.76, not 0.5758
    assert (c["1"]["intersection"], c["1"]["union"]) == (pytest.approx(95), pytest.approx(125))
    assert c["2"]["mean_iou_per_case"] == 1.0 and c["2"]["iou_pooled"] == pytest.approx(1.0)
    assert c["3"]["mean_iou_per_case"] == 1.0 and c["3"]["iou_pooled"] is None  # never present
    assert miou["mean_iou_per_case"] == pytest.approx(((5 / 15 + 90 / 110) / 2 + 1 + 1) / 3)
    assert miou["mean_iou_pooled"] == pytest.approx((0.76 + 1.0) / 2)
    assert miou["unit"] == "px2"


def test_evaluate_writes_boundary_iou_miou_and_the_pooled_error_curve(tmp_path):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=3)
    result = evaluate(
        pred_dir, ref_dir, labels="1:head,2:tail", output=tmp_path / "out", boundary_band_mm=1.5
    )
    out = tmp_path / "out"
    totals = {k: DistanceErrors.empty(DEFAULT_DISTANCE_BINS_MM) for k in (1, 2)}
    with (out / "metrics.csv").open() as fh:
        records = list(csv.DictReader(fh))
    assert len(records) == 6
    for rec in records:
        pred = read_volume(rec["pred_path"]).array
        ref_volume = read_volume(rec["ref_path"])
        k, spacing = int(rec["class_id"]), ref_volume.spacing
        expected = boundary_iou(pred == k, ref_volume.array == k, spacing, 1.5)  # whole image, no crop
        assert float(rec["boundary_iou"]) == pytest.approx(expected, abs=1e-12)
        totals[k] = totals[k] + DistanceErrors.measure(pred == k, ref_volume.array == k, spacing)
    data = json.loads((out / "boundary_error.json").read_text())
    assert data["bins"] == list(DEFAULT_DISTANCE_BINS_MM) and data["distance_unit"] == "mm"
    for k in (1, 2):
        entry = data["classes"][str(k)]
        assert entry["n_cases"] == 3
        assert entry["inside"]["voxels"] == totals[k].voxels[0].tolist()
        assert entry["outside"]["errors"] == totals[k].errors[1].tolist()
        rates = [math.nan if v is None else v for v in entry["both"]["error_rate"]]
        assert np.allclose(rates, totals[k].rates(), equal_nan=True)
    pooled = data["all_classes"]["both"]
    assert pooled["voxels"] == (totals[1].counts()[0] + totals[2].counts()[0]).tolist()
    # summary, settings and the round trip through the folder
    summary = json.loads((out / "summary.json").read_text())
    biou = [float(r["boundary_iou"]) for r in records if r["class_id"] == "1"]
    assert summary["classes"]["1"]["metrics"]["boundary_iou"]["mean"] == pytest.approx(np.mean(biou))
    assert summary["boundary_band_mm"] == 1.5 and "mean_iou_pooled" in summary["miou"]
    settings = json.loads((out / "evaluation.json").read_text())
    assert settings["boundary_band_mm"] == 1.5 and settings["distance_bins_mm"] == list(
        DEFAULT_DISTANCE_BINS_MM
    )
    loaded = load_evaluation(out)
    assert loaded.boundary_error == data and [r.boundary_iou for r in loaded.rows] == [
        r.boundary_iou for r in result.rows
    ]
    text = result.to_markdown()
    assert "BIoU@1.5mm" in text and "IoU pooled" in text and "dataset-level mIoU" in text


def test_pooled_miou_of_2d_pictures_equals_the_confusion_matrix(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(4)
    for n in range(3):
        ref = np.zeros((40, 50), np.uint8)
        ref[5 + n : 25, 5:30] = 1
        ref[20:35, 28 : 45 - n] = 2
        pred = ref.copy()
        flip = rng.random(ref.shape) < 0.1
        pred[flip] = rng.integers(0, 3, size=int(flip.sum()))
        for folder, image in (("ref", ref), ("pred", pred)):
            (tmp_path / folder).mkdir(exist_ok=True)
            Image.fromarray(image).save(tmp_path / folder / f"img{n}.png")
    result = evaluate(tmp_path / "pred", tmp_path / "ref")
    confusion_iou = result.confusion.iou()
    for k in (1, 2):
        assert result.summary["miou"]["classes"][str(k)]["iou_pooled"] == pytest.approx(confusion_iou[k])
    assert result.summary["miou"]["mean_iou_pooled"] == pytest.approx(result.summary["mean_iou"])


def test_old_evaluation_folders_still_load(tmp_path):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=2)
    out = tmp_path / "out"
    evaluate(pred_dir, ref_dir, output=out)
    # an evaluation written before boundary IoU: no column, no miou, no boundary_error.json
    lines = (out / "metrics.csv").read_text().splitlines()
    at = lines[0].split(",").index("boundary_iou")
    (out / "metrics.csv").write_text("\n".join(",".join(np.delete(line.split(","), at)) for line in lines))
    summary = json.loads((out / "summary.json").read_text())
    del summary["miou"]
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "boundary_error.json").unlink()
    loaded = load_evaluation(out)
    assert all(math.isnan(r.boundary_iou) for r in loaded.rows) and loaded.boundary_error is None
    assert loaded.summary["miou"]["mean_iou_per_case"] == pytest.approx(np.mean([r.iou for r in loaded.rows]))


def test_cli_boundary_band_and_distance_bins(tmp_path, capsys):
    pred_dir, ref_dir = write_dataset(tmp_path, n_cases=2)
    base = ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir)]
    out = tmp_path / "eval"
    assert main([*base, "--boundary-band", "3", "--distance-bins", "0,1,2,inf", "--output", str(out)]) == 0
    assert "BIoU@3mm" in capsys.readouterr().out.splitlines()[0]
    data = json.loads((out / "boundary_error.json").read_text())
    assert data["bins"] == [0.0, 1.0, 2.0, None]  # an infinite edge is null in JSON
    assert json.loads((out / "evaluation.json").read_text())["boundary_band_mm"] == 3.0
    none = tmp_path / "none"
    assert main([*base, "--distance-bins", "none", "--output", str(none)]) == 0
    assert not (none / "boundary_error.json").exists()
    capsys.readouterr()
    assert main([*base, "--boundary-band", "0"]) == ConfigError.exit_code
    one_error_line(capsys, "--boundary-band must be > 0 mm")
    assert main([*base, "--distance-bins", "0,2,1"]) == ConfigError.exit_code
    one_error_line(capsys, "distance bins must be at least two increasing edges")
    assert main([*base, "--distance-bins", "0,x"]) == ConfigError.exit_code
    one_error_line(capsys, "--distance-bins must be comma-separated edges in mm")
