"""Region-based training end to end: a nested-blob task (BraTS-like overlapping regions) trained on
the CPU with sigmoid outputs, validated per region, and predicted by ``Predictor.from_run`` from
the checkpoint alone, painted back in the declared order."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.config.load import config_from_dict
from medseg.config.schema import RegionConfig
from medseg.data.regions import regions_to_targets
from medseg.errors import ConfigError
from medseg.inference.predictor import Predictor
from medseg.training import Trainer
from medseg.training.checkpoint import load_checkpoint
from medseg.volume import Volume

#: Nested blobs: 2 outside ("oedema"), 1 within ("core"), 3 at the centre ("enhancing").
REGIONS = [
    {"name": "whole", "labels": [1, 2, 3], "value": 2},
    {"name": "core", "labels": [1, 3], "value": 1},
    {"name": "enhancing", "labels": [3], "value": 3},
]
#: Every region's Dice must pass this after the short run (240 steps, ~10 s on 2 CPU cores; it
#: reaches 0.93-0.96, and a region mixed up with another stays far below).
DICE_BAR = 0.85
SHAPE = (24, 24, 20)


def nested_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three nested ellipsoids with intensities 1, 2, 3 in noise (sigma 0.25)."""
    g = np.indices(SHAPE).astype(float)
    centre = [rng.uniform(s * 0.4, s * 0.6) for s in SHAPE]
    radius = rng.uniform(6.5, 8.0)
    r2 = sum(((g[a] - centre[a]) / (radius * s / 24)) ** 2 for a, s in enumerate(SHAPE))
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[r2 < 1.0] = 2
    label[r2 < 0.5] = 1
    label[r2 < 0.2] = 3
    intensity = np.array([0.0, 2.0, 1.0, 3.0])[label]
    return (intensity + rng.normal(0, 0.25, SHAPE)).astype(np.float32), label


def write_nested_dataset(root: Path, n: int = 5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    cases = []
    for i in range(n):
        image, label = nested_case(rng)
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / f"n{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / f"n{i}_seg.nii.gz")
        split = "val" if i == n - 1 else "train"
        cases.append({"id": f"n{i}", "images": [f"n{i}.nii.gz"], "label": f"n{i}_seg.nii.gz", "split": split})
    labels = {"0": "background", "1": "core", "2": "oedema", "3": "enhancing"}
    (root / "manifest.json").write_text(json.dumps({"name": "nested", "labels": labels, "cases": cases}))
    return root / "manifest.json"


def _pipeline(manifest: Path, cache: Path, **extra) -> dict:
    config = {
        "name": "nested_regions",
        "regions": REGIONS,
        "data": {"manifest": str(manifest), "cache_dir": str(cache)},
        "preprocessing": {"target_spacing": None, "crop_foreground": False},
        "model": {"name": "unet", "spatial_dims": 3, "params": {"features": [8, 16, 32]}},
        "loss": {"name": "region_dice_bce"},
        "augmentation": {"enabled": False},
        "training": {
            "epochs": 6,
            "iterations_per_epoch": 40,
            "batch_size": 2,
            "patch_size": [16, 16, 16],
            "val_every": 3,
            "num_workers": 0,
            "lr": 0.01,
            "seed": 1,
        },
    }
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_nested_dataset(tmp_path_factory.mktemp("nested"))


def _region_dice(pred: np.ndarray, truth: np.ndarray, regions: list[RegionConfig]) -> list[float]:
    p, t = regions_to_targets(pred, regions) > 0, regions_to_targets(truth, regions) > 0
    return [2 * float((a & b).sum()) / float(a.sum() + b.sum()) for a, b in zip(p, t)]


def test_regions_train_validate_and_predict_end_to_end(manifest, tmp_path):
    run = tmp_path / "run"
    Trainer(config_from_dict(_pipeline(manifest, tmp_path / "cache")), run, device="cpu").fit()
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    validated = [r for r in rows if r["val_dice_mean"]]
    assert len(validated) == 2 and float(validated[1]["val_dice_mean"]) > float(validated[0]["val_dice_mean"])
    last = rows[-1]
    for name in ("whole", "core", "enhancing"):  # validation Dice per region
        assert float(last[f"val_dice_{name}"]) > DICE_BAR, (name, last)
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert state["model_config"]["out_channels"] == 3  # one sigmoid output per region
    assert [r["name"] for r in state["config"]["regions"]] == ["whole", "core", "enhancing"]

    predictor = Predictor.from_run(run, device="cpu")  # regions from the checkpoint alone
    case = nib.load(manifest.parent / "n4.nii.gz")
    truth = np.asarray(nib.load(manifest.parent / "n4_seg.nii.gz").dataobj)
    image = Volume(np.asarray(case.dataobj, dtype=np.float32), case.affine)
    prediction = predictor.predict(image, probabilities=True)
    painted = prediction.labels.array
    assert set(np.unique(painted).tolist()) <= {0, 1, 2, 3}
    regions = [RegionConfig(**r) for r in REGIONS]
    assert min(_region_dice(painted, truth, regions)) > DICE_BAR
    probs = prediction.probabilities.array
    assert probs.shape == (*SHAPE, 3) and probs.min() >= 0 and probs.max() <= 1  # sigmoid per region
    nested = probs[..., 0] + 1e-3 >= probs[..., 2]  # enhancing lies within whole tumour
    assert nested.mean() > 0.99
    assert [r["name"] for r in prediction.info["regions"]] == ["whole", "core", "enhancing"]


def test_regions_need_a_region_loss_and_back(manifest, tmp_path):
    with pytest.raises(
        ConfigError, match="'dice_focal' is a softmax loss, but the pipeline trains on 3 regions"
    ):
        Trainer(config_from_dict(_pipeline(manifest, tmp_path, loss={"name": "dice_focal"})), tmp_path / "r")
    config = config_from_dict(_pipeline(manifest, tmp_path, regions=None))
    with pytest.raises(ConfigError, match="neither the pipeline nor its manifest declares any"):
        Trainer(config, tmp_path / "r2", device="cpu").fit()


def test_regions_of_the_manifest_are_trained_and_recorded(manifest, tmp_path):
    """A manifest that declares regions (as a dataset.json with regions_class_order does) trains
    regions without a regions section in the pipeline; the run records them for prediction."""
    data = json.loads(manifest.read_text())
    data["cases"] = [
        {**c, "images": [str(manifest.parent / c["images"][0])], "label": str(manifest.parent / c["label"])}
        for c in data["cases"]
    ]
    with_regions = tmp_path / "manifest.json"
    with_regions.write_text(json.dumps({**data, "regions": REGIONS}))
    config = _pipeline(with_regions, tmp_path / "cache", regions=None)
    config["training"].update(epochs=1, iterations_per_epoch=2, val_every=1)
    run = tmp_path / "run"
    Trainer(config_from_dict(config), run, device="cpu").fit()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["model_config"]["out_channels"] == 3
    assert state["config"]["regions"] == REGIONS
    assert Predictor.from_run(run, device="cpu").regions == [RegionConfig(**r) for r in REGIONS]
