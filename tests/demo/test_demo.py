"""medseg demo: the embedded sample, the pipeline it trains, the SEG export, the whole run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import yaml

from medseg.cli.main import main
from medseg.data import sample_path
from medseg.demo import PIPELINE, ct_example, ct_sample_uid, export_case_seg, run_demo
from medseg.errors import MedsegError
from medseg.io import read_volume

REPO = Path(__file__).resolve().parents[2]
LABELS = {1: "anterior", 2: "posterior"}


def test_sample_is_a_valid_msd_dataset_under_4_mb_with_licences():
    root = sample_path("hippocampus")
    ds = json.loads((root / "dataset.json").read_text())
    train = [root / e["image"] for e in ds["training"]] + [root / e["label"] for e in ds["training"]]
    test = sorted((root / "imagesTs").glob("*.nii.gz"))
    assert len(ds["training"]) == 36 and len(test) == 10
    assert all(p.is_file() for p in train)
    assert [p.name for p in test] == [p.name for p in sorted((root / "labelsTs").glob("*.nii.gz"))]
    train_ids = {Path(e["image"]).name for e in ds["training"]}
    assert not train_ids & {p.name for p in test}, "a held-out case is also a training case"
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 4_000_000
    assert "CC BY-SA 4.0" in (root / "LICENSE.txt").read_text()
    ct = sample_path("totalsegmentator_ct")
    assert "Apache" in (ct / "LICENSE.txt").read_text()
    assert len(list((ct / "dicom").iterdir())) == 20


def test_demo_pipeline_is_the_benchmark_recipe():
    """Only the data, the budget and the validation schedule may differ from the benchmark."""
    demo = yaml.safe_load(PIPELINE.read_text())
    bench = yaml.safe_load((REPO / "pipelines" / "hippocampus_unet3d.yaml").read_text())
    for cfg in (demo, bench):
        cfg.pop("name"), cfg.pop("data")
        for key in ("max_minutes", "val_every"):
            cfg["training"].pop(key)
    assert demo == bench


def test_export_case_seg_matches_the_mask_slice_by_slice(tmp_path):
    root = sample_path("hippocampus")
    case = "hippocampus_015"
    mask_path = root / "labelsTs" / f"{case}.nii.gz"
    seg_path, series = export_case_seg(root / "imagesTs" / f"{case}.nii.gz", mask_path, LABELS, tmp_path)
    mask = read_volume(mask_path).array
    seg = hd.seg.segread(seg_path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["anterior", "posterior"]
    files = sorted(series.iterdir())
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert len(headers) == mask.shape[2]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == headers[0].SeriesInstanceUID
    uids = [h.SOPInstanceUID for h in headers]  # slice k of the NIfTI is instance k + 1
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    for k in range(mask.shape[2]):
        np.testing.assert_array_equal(pixels[k], mask[:, :, k].T, err_msg=f"slice {k}")


def test_demo_refuses_to_overwrite_an_earlier_demo(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["demo", "--output", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert main(["demo", "--minutes", "0", "--output", str(tmp_path / "x")]) != 0
    assert "--minutes" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end_with_a_tiny_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    result = run_demo(
        out,
        minutes=0.05,
        device="cpu",
        overrides=["training.iterations_per_epoch=4", "inference.tta=false"],
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_test"] == 10 and summary["n_train"] == 36 and summary["steps"] >= 1
    assert set(summary["dice"]) == {"anterior", "posterior"}
    assert all(0.0 <= v <= 1.0 for v in summary["dice"].values())
    # one mask per held-out case, each on its scan's own grid
    for image in sorted((sample_path("hippocampus") / "imagesTs").glob("*.nii.gz")):
        pred = read_volume(out / "predictions" / image.name)
        scan = read_volume(image)
        assert pred.array.shape == scan.array.shape and np.allclose(pred.affine, scan.affine)
    rows = (out / "run" / "evaluation" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 10 * 2
    assert len(list((out / "run" / "evaluation" / "overlays").glob("*.png"))) == 10
    html = Path(result.report).read_text()
    assert "hippocampus_015" in html and "<img" in html
    if result.seg is None:  # the tiny model predicted nothing anywhere
        assert all(not read_volume(p).array.any() for p in (out / "predictions").glob("*.nii.gz"))
    else:
        assert hd.seg.segread(result.seg).SegmentSequence
    ct_seg = hd.seg.segread(result.ct_seg)
    assert len(ct_seg.SegmentSequence) == 31
    assert Path(result.ct_overlay).stat().st_size > 10_000
    assert "Held-out Dice (10 cases)" in result.summary()
    with pytest.raises(MedsegError, match="--overwrite"):
        run_demo(out, minutes=0.05)


def test_quickstart_ct_commands_run(tmp_path, capsys, monkeypatch):
    """The commands of docs/quickstart.md section 3, on the embedded CT, as written there."""
    text = (REPO / "docs" / "quickstart.md").read_text()
    block = text.split("## 3.")[1].split("```bash")[1].split("```")[0]
    commands = [c.split() for c in block.replace("\\\n", " ").strip().splitlines()]
    assert [c[:2] for c in commands] == [["medseg", "info"], ["medseg", "convert"], ["medseg", "export"]]
    monkeypatch.chdir(REPO)
    for args in commands:
        written = [str(tmp_path / a) if "/" not in a and a.endswith((".nii.gz", ".dcm")) else a for a in args]
        args = written[1:]  # output files go to tmp_path
        assert main(args) == 0, args
    assert "512" in capsys.readouterr().out
    ct = read_volume(tmp_path / "ct.nii.gz")
    assert ct.array.shape == (512, 512, 20) and float(ct.array.min()) >= 0.0 and float(ct.array.max()) <= 1.0
    rt = pydicom.dcmread(tmp_path / "organs.rtstruct.dcm")
    assert len(rt.StructureSetROISequence) == 31


def test_ct_example_gives_the_sample_stable_uids_without_warnings(tmp_path, caplog):
    """The CT part of the demo: no 'has no StudyInstanceUID' warnings, the same UIDs in every run."""
    caplog.set_level(logging.WARNING)
    runs = []
    for name in ("first", "second"):
        _, seg_path = ct_example(tmp_path / name)
        files = sorted((tmp_path / name / "dicom").iterdir())
        headers = [pydicom.dcmread(f) for f in files]
        seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
        runs.append((headers, seg))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "UID" in w], warnings
    (first, seg_a), (second, seg_b) = runs
    assert len(first) == 20
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        values = [str(getattr(h, keyword)) for h in first]
        assert all(values) and values == [str(getattr(h, keyword)) for h in second], keyword
    assert {h.StudyInstanceUID for h in first} == {ct_sample_uid("study")}
    assert {h.SeriesInstanceUID for h in first} == {ct_sample_uid("series")}
    assert ct_sample_uid("study") != ct_sample_uid("series")
    # the SEGs of both runs file into the same study and reference the same series
    assert seg_a.StudyInstanceUID == seg_b.StudyInstanceUID == ct_sample_uid("study")
    assert seg_a.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_sample_uid("series")
    # the pixel data is copied as stored (JPEG 2000), the sample itself is untouched
    source = sorted((sample_path("totalsegmentator_ct") / "dicom").iterdir())
    original = pydicom.dcmread(source[0])
    assert first[0].PixelData == original.PixelData and first[0].file_meta.TransferSyntaxUID.is_compressed
    assert not str(original.get("StudyInstanceUID", ""))
