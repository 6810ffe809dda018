"""2D pictures through the command line: ``medseg predict`` on a folder of PNG/TIFF slices
writes one picture mask per slice (same width and height), ``medseg evaluate`` reads them
against PNG references, and ``medseg convert`` turns a PNG into NIfTI and back."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from medseg.cli.main import main
from medseg.config.load import config_from_dict
from medseg.evaluation import load_evaluation
from medseg.inference import Predictor
from medseg.inference.batch import predict_folder
from medseg.io import read_volume
from medseg.training.checkpoint import save_inference_checkpoint
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume
from tests.fixtures.models import Threshold


def make_2d_run(run_dir: Path, labels: dict[int, str], winner: int) -> Path:
    """A run folder of a 2D U-Net (slices along k) whose output is ``winner`` everywhere: every
    weight is zero and only the head's bias of class ``winner`` is 1, so its masks are known."""
    from medseg.models import build_model

    model = build_model("unet", 2, 1, len(labels), features=[4, 8])
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        dict(model.named_parameters())["net.head.bias"][winner] = 1.0
    img = Volume(np.random.default_rng(0).normal(size=(24, 24, 1)).astype(np.float32), np.eye(4))
    plan = Plan.from_dataset([(img, None)], labels, target_spacing=None, crop_foreground=False)
    cfg = config_from_dict(
        {
            "name": "tiny2d",
            "data": {"manifest": "unused.json"},
            "model": {"name": "unet", "spatial_dims": 2, "params": {"features": [4, 8]}},
            "training": {"patch_size": [16, 16]},
            "inference": {"overlap": 0.25, "tta": False},
        }
    )
    save_inference_checkpoint(run_dir / "checkpoints" / "best.pt", model, plan, cfg, slice_axis=2)
    return run_dir


@pytest.fixture
def slices(tmp_path) -> Path:
    """EM-like slices of several sizes and kinds: 8-bit PNG, 16-bit TIFF, JPEG, 3-page TIFF."""
    rng = np.random.default_rng(3)
    root = tmp_path / "slices"
    root.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(root / "a.png")
    tifffile.imwrite(root / "b.tif", rng.integers(0, 65536, (33, 27), dtype=np.uint16))
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(root / "c.JPG")
    tifffile.imwrite(
        root / "stack.tiff", rng.integers(0, 4096, (3, 24, 30), dtype=np.uint16), photometric="minisblack"
    )
    return root


def _cli(*args: str) -> int:
    return main([*args])


def test_predict_evaluate_on_png_and_tiff_slices(slices, tmp_path, capsys):
    run = make_2d_run(tmp_path / "run", {0: "background", 1: "membrane"}, winner=1)
    out = tmp_path / "out"
    assert _cli("predict", "-i", str(slices), "-o", str(out), "-m", str(run), "--device", "cpu") == 0

    # one picture mask per input, of the input's width and height; PNG for one slice of 8-bit labels
    for name, size in (("a.png", (50, 40)), ("b.png", (27, 33)), ("c.png", (30, 20))):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.mode == "L" and img.size == size, name
            assert np.all(np.asarray(img) == 1), name
    with tifffile.TiffFile(out / "stack.tif") as tif:  # pages stay pages: a TIFF of 3 pages
        assert len(tif.pages) == 3 and tif.pages[0].shape == (24, 30)
        assert np.all(tif.asarray() == 1)
    assert not list(out.glob("*.nii.gz"))  # NIfTI only on request
    record = json.loads((out / "predictions.json").read_text())
    assert {c["id"]: c["status"] for c in record["cases"]} == dict.fromkeys(["a", "b", "c", "stack"], "ok")
    assert {Path(c["output"]).name for c in record["cases"]} == {"a.png", "b.png", "c.png", "stack.tif"}

    # resumable: finished pictures are skipped
    assert _cli("predict", "-i", str(slices), "-o", str(out), "-m", str(run), "--device", "cpu") == 0
    record = json.loads((out / "predictions.json").read_text())
    assert {c["status"] for c in record["cases"]} == {"skipped"}

    # evaluate against hand-made PNG references: the prediction is all 1
    refs = tmp_path / "refs"
    refs.mkdir()
    ref_a = np.zeros((40, 50), np.uint8)
    ref_a[5:15, 10:30] = 1  # 200 pixels of 2000
    Image.fromarray(ref_a).save(refs / "a.png")
    Image.fromarray(np.ones((33, 27), np.uint8)).save(refs / "b.png")
    capsys.readouterr()
    evaluated = tmp_path / "evaluation"
    assert _cli("evaluate", "--pred", str(out), "--ref", str(refs), "--output", str(evaluated)) == 0
    assert "a" in capsys.readouterr().out
    result = load_evaluation(evaluated)
    dice = {r.case: r.dice for r in result.rows if r.class_id == 1}
    assert dice["a"] == pytest.approx(2 * 200 / (200 + 2000), abs=1e-12)
    assert dice["b"] == 1.0
    assert result.unmatched_pred == ["c", "stack"] and result.settings["distance_unit"] == "px"

    # --format nifti: a NIfTI copy beside each picture, on the picture's grid; evaluate still
    # compares the PNG with the PNG reference
    both = tmp_path / "both"
    assert (
        _cli(
            "predict",
            "-i",
            str(slices),
            "-o",
            str(both),
            "-m",
            str(run),
            "--device",
            "cpu",
            "--format",
            "nifti",
        )
        == 0
    )
    assert (both / "a.png").is_file() and (both / "a.nii.gz").is_file()
    nii = nib.load(both / "a.nii.gz")
    assert nii.shape == (40, 50, 1) and np.all(np.asarray(nii.dataobj) == 1)
    assert _cli("evaluate", "--pred", str(both), "--ref", str(refs)) == 0


def test_more_than_255_labels_give_a_16bit_tiff_mask(slices, tmp_path):
    labels = {i: f"class_{i}" for i in range(301)}
    run = make_2d_run(tmp_path / "run", labels, winner=300)
    out = tmp_path / "out"
    assert (
        _cli("predict", "-i", str(slices / "a.png"), "-o", str(out), "-m", str(run), "--device", "cpu") == 0
    )
    assert not (out / "a.png").exists()
    with tifffile.TiffFile(out / "a.tif") as tif:
        mask = tif.asarray()
    assert mask.dtype == np.uint16 and mask.shape == (40, 50) and np.all(mask == 300)


def test_picture_masks_follow_the_pixels(slices, tmp_path):
    """A fixed threshold as the model: each mask equals ``pixel > t`` pixel for pixel, so no
    picture is flipped or transposed on the way."""
    scan = read_volume(slices / "b.tif")
    plan = Plan.from_dataset(
        [(scan, None)], {0: "bg", 1: "fg"}, target_spacing=None, normalization="none", crop_foreground=False
    )
    predictor = Predictor(Threshold(30000.0), plan, (16, 16), slice_axis=2)
    result = predict_folder(predictor, slices, tmp_path / "out")
    assert result.exit_code == 0
    pixels = tifffile.imread(slices / "b.tif")
    with Image.open(tmp_path / "out" / "b.png") as img:
        assert np.array_equal(np.asarray(img), (pixels > 30000).astype(np.uint8))
    pages = tifffile.imread(slices / "stack.tiff")
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "stack.tif"), (pages > 30000).astype(np.uint8))


def test_convert_png_to_nifti_and_back(tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (37, 45), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "slice.png")
    assert _cli("convert", str(tmp_path / "slice.png"), str(tmp_path / "slice.nii.gz")) == 0
    nii = nib.load(tmp_path / "slice.nii.gz")
    assert nii.shape == (37, 45, 1) and np.array_equal(np.asarray(nii.dataobj)[:, :, 0], pixels)
    assert _cli("convert", str(tmp_path / "slice.nii.gz"), str(tmp_path / "back.png")) == 0
    with Image.open(tmp_path / "back.png") as img:
        assert img.mode == "L" and np.array_equal(np.asarray(img), pixels)
    deep = rng.integers(0, 65536, (19, 23), dtype=np.uint16)  # 16-bit TIFF: values kept exactly
    tifffile.imwrite(tmp_path / "deep.tif", deep)
    assert _cli("convert", str(tmp_path / "deep.tif"), str(tmp_path / "deep.nii.gz")) == 0
    assert _cli("convert", str(tmp_path / "deep.nii.gz"), str(tmp_path / "deep_back.tif")) == 0
    back = tifffile.imread(tmp_path / "deep_back.tif")
    assert back.dtype == np.uint16 and np.array_equal(back, deep)


def test_colour_picture_for_a_greyscale_model_names_the_colour(tmp_path, capsys):
    run = make_2d_run(tmp_path / "run", {0: "bg", 1: "fg"}, winner=1)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(rgb)
    code = _cli("predict", "-i", str(rgb), "-o", str(tmp_path / "out"), "-m", str(run), "--device", "cpu")
    assert code != 0
    record = (tmp_path / "out" / "predictions.json").read_text()
    assert "3 colour channels but the model takes one" in record and "greyscale" in record
