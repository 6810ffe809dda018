"""Blob loss (Kofler et al., IPMI 2023): every lesion counts, other lesions are masked out."""

from __future__ import annotations

import pytest
import torch

from medseg.config import PipelineConfig
from medseg.losses import DeepSupervision
from medseg.losses.blob import SMOOTH, BlobDice, blob_dice_term


class _Zero(torch.nn.Module):
    def forward(self, logits, labels):
        return logits.sum() * 0.0


def _two_lesions() -> torch.Tensor:
    """A 1 x 20 x 20 label map: a 10 x 10 lesion (100 voxels) and a 1 x 2 lesion (2 voxels)."""
    lab = torch.zeros(1, 20, 20, dtype=torch.long)
    lab[0, 2:12, 2:12] = 1
    lab[0, 17, 16:18] = 1
    return lab


def _soft_dice(prob: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return 1 - (2 * (prob * ref).sum() + SMOOTH) / (prob.sum() + ref.sum() + SMOOTH)


def test_exact_prediction_gives_zero():
    lab = _two_lesions()
    assert float(blob_dice_term(lab.float(), lab > 0)) == pytest.approx(0.0, abs=1e-6)


def test_missed_small_lesion_costs_half_while_soft_dice_barely_moves():
    lab = _two_lesions()
    prob = torch.zeros(1, 20, 20)
    prob[0, 2:12, 2:12] = 1  # big lesion found, small one missed
    blob = float(blob_dice_term(prob, lab > 0))
    # lesion Dice: big (200 + e) / (200 + e) = 1, small e / (0 + 0 + 2 + e) ~ 0 -> 1 - 0.5
    assert blob == pytest.approx(0.5, abs=1e-4)
    assert float(_soft_dice(prob, (lab > 0).float())) == pytest.approx(
        2 / 202, abs=1e-4
    )  # 1 - 200 / (100 + 102)


def test_other_lesions_are_no_false_positives():
    lab = _two_lesions()
    prob = torch.zeros(1, 20, 20)
    prob[0, 17, 16:18] = 1  # only the small lesion predicted
    prob[0, 0, 19] = 1  # one false positive in the background
    # small: 4 / (1 + 2 + 2) = 0.8 (the big lesion's voxels are not counted); big: ~0 (1 FP voxel)
    big = SMOOTH / (1 + 100 + SMOOTH)
    expected = 1 - (0.8 + big) / 2
    assert float(blob_dice_term(prob, lab > 0)) == pytest.approx(expected, abs=1e-4)


def test_no_lesion_gives_zero_on_graph():
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    loss = BlobDice(_Zero(), 1.0)(logits, torch.zeros(2, 8, 8, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0


def test_gradient_reaches_the_missed_lesion():
    lab = _two_lesions()
    logits = torch.zeros(1, 2, 20, 20)
    logits[:, 1] = -8.0  # confident background everywhere, the small lesion included ...
    logits[:, 1, 2:12, 2:12] = 8.0  # ... except on the big lesion
    logits.requires_grad_(True)
    loss = BlobDice(_Zero(), 1.0)(logits, lab)
    assert 0.4 < loss.item() < 0.6
    loss.backward()
    assert float(logits.grad[0, 1, 17, 16:18].abs().min()) > 0
    assert float(logits.grad[0, 1, 17, 16:18].max()) < 0  # raising the lesion logit lowers the loss


def test_3d_batch_and_channel_labels():
    lab = torch.zeros(2, 1, 6, 6, 6, dtype=torch.long)
    lab[0, 0, 1:3, 1:3, 1:3] = 2
    lab[0, 0, 4, 4, 4] = 1
    logits = torch.randn(2, 3, 6, 6, 6)
    loss = BlobDice(_Zero(), 2.0)(logits, lab)  # sample 1 has no lesion: only sample 0 counts
    prob = 1 - logits.softmax(1)[:, 0]
    assert float(loss) == pytest.approx(2 * float(blob_dice_term(prob[:1], lab[:1, 0] > 0)), rel=1e-5)


def test_regions_use_channel_zero_and_its_labels():
    lab = torch.zeros(1, 8, 8, dtype=torch.long)
    lab[0, 1:3, 1:3] = 2
    lab[0, 6, 6] = 3  # not in the first region: background for the blob term
    logits = torch.full((1, 2, 8, 8), -20.0)
    logits[0, 0, 1:3, 1:3] = 20
    loss = BlobDice(_Zero(), 1.0, regions=True, region_labels=[1, 2])(logits, lab)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="region_labels"):
        BlobDice(_Zero(), 1.0, regions=True)


def test_under_deep_supervision():
    lab = _two_lesions()
    outs = [torch.randn(1, 2, 20, 20, requires_grad=True), torch.randn(1, 2, 10, 10, requires_grad=True)]
    loss = DeepSupervision(BlobDice(_Zero(), 1.0))(outs, lab)
    loss.backward()
    assert torch.isfinite(loss) and all(o.grad is not None for o in outs)


def _config(**loss) -> PipelineConfig:
    raw = {
        "name": "t",
        "data": {"manifest": "m.csv"},
        "model": {"name": "unet"},
        "training": {"patch_size": [16, 16, 16]},
        "loss": loss,
    }
    return PipelineConfig.model_validate(raw)


def test_weight_zero_is_exactly_the_base_loss():
    from medseg.training.loss_setup import build_training_loss

    loss = build_training_loss(_config(name="dice_ce"), 3, None)
    assert not isinstance(loss.loss, BlobDice)
    with_blob = build_training_loss(_config(name="dice_ce", lesion_weight=0.5), 3, None)
    assert isinstance(with_blob.loss, BlobDice) and with_blob.loss.weight == 0.5


def test_build_training_loss_with_regions():
    from medseg.config.schema import RegionConfig
    from medseg.losses.region_dice_bce import RegionTargets
    from medseg.training.loss_setup import build_training_loss

    regions = [
        RegionConfig(name="wt", labels=[1, 2, 3], value=2),
        RegionConfig(name="tc", labels=[1, 3], value=1),
    ]
    loss = build_training_loss(_config(name="region_dice_bce", lesion_weight=1.0), 2, regions)
    assert isinstance(loss, DeepSupervision) and isinstance(loss.loss, BlobDice)
    assert isinstance(loss.loss.loss, RegionTargets) and loss.loss.region_labels == [1, 2, 3]
    lab = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    lab[0, 1:4, 1:4, 1:4] = 2
    lab[0, 6, 6, 6] = 3
    logits = torch.randn(2, 2, 8, 8, 8, requires_grad=True)
    value = loss([logits, torch.randn(2, 2, 4, 4, 4)], lab)
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None
