"""``plot_curves``: three panels from a run's metrics.csv, validation gaps tolerated."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import CorruptFileError, InputNotFoundError
from medseg.reporting.curves import plot_curves, read_run_metrics
from tests.reporting.conftest import color_mask, decode_png, write_run_metrics

GOLD = "#ffd700"  # the best-epoch star
TRAIN = "#1f77b4"
CLASS_COLORS = ("#2ca02c", "#ff7f0e")


def _thirds(rgb: np.ndarray) -> list[np.ndarray]:
    w = rgb.shape[1]
    return [rgb[:, : w // 3], rgb[:, w // 3 : 2 * w // 3], rgb[:, 2 * w // 3 :]]


def test_curves_from_a_run_with_periodic_validation(tmp_path):
    csv_path = write_run_metrics(tmp_path / "run" / "metrics.csv", n_epochs=20, val_every=5)
    metrics = read_run_metrics(csv_path)
    assert metrics.n_rows == 20 and metrics.class_columns == ["val_dice_head", "val_dice_tail"]
    assert np.isnan(metrics["val_loss"][0]) and np.isfinite(metrics["val_loss"][4])
    out = plot_curves(csv_path, tmp_path / "run" / "curves.png")
    rgb = decode_png(out.read_bytes())
    assert rgb.shape == (420, 1300, 3)
    loss, dice, lr = _thirds(rgb)
    assert color_mask(loss, TRAIN, 10).sum() > 100  # the training loss line, in the loss panel
    for color in CLASS_COLORS:  # one Dice curve per class, in the Dice panel only
        assert color_mask(dice, color, 10).sum() > 30
        assert color_mask(loss, color, 10).sum() == 0
    assert color_mask(dice, GOLD, 10).sum() > 20  # best validation epoch marked
    assert color_mask(lr, "#555555", 10).sum() > 50
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png", "metrics.csv"]  # no temp left over


def test_curves_before_any_validation(tmp_path):
    csv_path = write_run_metrics(tmp_path / "metrics.csv", n_epochs=3, val_every=100)
    rgb = decode_png(plot_curves(csv_path, tmp_path / "curves.png").read_bytes())
    _, dice, _ = _thirds(rgb)
    assert color_mask(dice, GOLD, 10).sum() == 0
    assert color_mask(rgb, TRAIN, 10).sum() > 30


def test_bad_metrics_files(tmp_path):
    with pytest.raises(InputNotFoundError, match="no training metrics"):
        plot_curves(tmp_path / "missing.csv", tmp_path / "c.png")
    (tmp_path / "bad.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(CorruptFileError, match="lacks the columns step, train_loss"):
        plot_curves(tmp_path / "bad.csv", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
