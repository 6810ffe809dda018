"""Evaluation and run folders shared by the reporting tests (built once per module)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluation import evaluate
from medseg.io import write_volume
from medseg.volume import Volume
from tests.evaluation.synthetic import AFFINE, label_pair, write_labels


def decode_png(data: bytes) -> np.ndarray:
    """RGB pixels of PNG bytes (raises if they are not a valid PNG)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def color_mask(rgb: np.ndarray, hex_color: str, tol: int = 40) -> np.ndarray:
    """Pixels within ``tol`` (per channel) of ``hex_color``."""
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return np.all(np.abs(rgb.astype(int) - target) <= tol, axis=-1)


def write_run_metrics(path: Path, n_epochs: int = 20, val_every: int = 5, classes=("head", "tail")) -> Path:
    """A run metrics.csv with the contract's columns (validation cells empty between validations)."""
    rows = []
    for e in range(n_epochs):
        val = (e + 1) % val_every == 0
        dices = [0.9 * (1 - np.exp(-(e + 1) / (6 + 2 * n))) for n in range(len(classes))]
        row = {
            "epoch": e,
            "step": (e + 1) * 40,
            "train_loss": 1.1 * np.exp(-e / 8) + 0.1,
            "val_loss": 1.2 * np.exp(-e / 8) + 0.15 if val else "",
            "val_dice_mean": float(np.mean(dices)) if val else "",
            "lr": 1e-2 * (1 - e / n_epochs) ** 0.9,
            "seconds": 3.5,
        }
        row.update({f"val_dice_{c}": (d if val else "") for c, d in zip(classes, dices)})
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def build_evaluation(root: Path, n_cases: int = 7, seed: int = 0, with_images: bool = True) -> Path:
    """``root/{pred,ref,images}`` and the evaluation folder ``root/evaluation``."""
    rng = np.random.default_rng(seed)
    for n in range(n_cases):
        pred, ref = label_pair(seed + n)
        if n == 1:  # one clearly bad case
            pred = np.roll(pred, 3, axis=0)
        write_labels(root / "ref" / f"case_{n:03d}.nii.gz", ref)
        write_labels(root / "pred" / f"case_{n:03d}.nii.gz", pred)
        if with_images:
            image = 100.0 * (ref > 0) + 20.0 * rng.standard_normal(ref.shape)
            write_volume(
                Volume(image.astype(np.float32), AFFINE), root / "images" / f"case_{n:03d}_0000.nii.gz"
            )
    evaluate(
        root / "pred",
        root / "ref",
        labels="1:head,2:tail",
        output=root / "evaluation",
        image_dir=root / "images" if with_images else None,
    )
    return root / "evaluation"


@pytest.fixture(scope="module")
def evaluation_dir(tmp_path_factory) -> Path:
    return build_evaluation(tmp_path_factory.mktemp("evaluation"))


@pytest.fixture(scope="module")
def second_evaluation_dir(tmp_path_factory, evaluation_dir) -> Path:
    """The same references, another (better) prediction of every case."""
    root = tmp_path_factory.mktemp("evaluation_b")
    ref_dir = evaluation_dir.parent / "ref"
    for n in range(7):
        pred, ref = label_pair(n)
        better = np.where(np.random.default_rng(n).random(ref.shape) < 0.5, ref, pred).astype(np.uint8)
        write_labels(root / "pred" / f"case_{n:03d}.nii.gz", better)
    evaluate(root / "pred", ref_dir, labels="1:head,2:tail", output=root / "evaluation")
    return root / "evaluation"
