"""Training with lesion sampling and the blob loss, deep supervision included."""

from __future__ import annotations

import csv

import numpy as np

from medseg.config.load import config_from_dict
from medseg.losses.blob import BlobDice
from medseg.training import Trainer
from tests.fixtures.synthetic_dataset import pipeline_dict, write_3d_dataset


def test_lesion_sampling_and_blob_loss_train(tmp_path):
    data = write_3d_dataset(tmp_path / "d", n=4)
    raw = pipeline_dict(
        data,
        tmp_path / "cache",
        "dynunet",
        3,
        {"features": [8, 16, 32], "deep_supervision": True},
        epochs=2,
        iterations_per_epoch=3,
        deep_supervision=True,
        foreground_sampling="lesion",
        foreground_oversample=1.0,
    )
    raw["loss"] = {"name": "dice_ce", "lesion_weight": 0.5}
    trainer = Trainer(config_from_dict(raw), tmp_path / "run", device="cpu")
    trainer.fit()
    assert isinstance(trainer.loss.loss, BlobDice)
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    assert all(np.isfinite(float(r["train_loss"])) and np.isfinite(float(r["val_loss"])) for r in rows)
