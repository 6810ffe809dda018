"""Loss values against MONAI computed directly and against the papers' formulas by hand;
unknown names and parameters are refused, never replaced by cross-entropy."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss, DiceFocalLoss, FocalLoss

from medseg.config import LossConfig
from medseg.errors import ConfigError
from medseg.losses import build_loss

C = 3


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(2, C, 6, 5, 4, generator=g), torch.randint(0, C, (2, 6, 5, 4), generator=g)


def _onehot(labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, C).movedim(-1, 1).float()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (float(a), float(b))


def test_default_loss_is_monai_dice_focal(batch):
    logits, labels = batch
    assert LossConfig().name == "dice_focal"
    ref = DiceFocalLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True, gamma=2.0)
    _close(build_loss(LossConfig().name, C)(logits, labels), ref(logits, labels[:, None]))


@pytest.mark.parametrize("weights", [None, [0.2, 1.0, 3.0]])
def test_dice_ce_is_monai_dice_ce(batch, weights):
    logits, labels = batch
    w = torch.tensor(weights) if weights else None
    ref = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True, weight=w)
    _close(build_loss("dice_ce", C, class_weights=weights)(logits, labels), ref(logits, labels[:, None]))


@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
def test_focal_is_monai_focal(batch, gamma):
    logits, labels = batch
    ref = FocalLoss(include_background=False, to_onehot_y=True, gamma=gamma, use_softmax=True)
    _close(build_loss("focal", C, gamma=gamma)(logits, labels), ref(logits, labels[:, None]))


def test_focal_by_hand(batch):
    """Lin 2017, as MONAI's softmax FocalLoss computes it without background: softmax over the
    foreground channels, mean over voxels and those channels of -y (1 - p)^gamma log p."""
    logits, labels = batch
    p = logits[:, 1:].softmax(1)
    y = _onehot(labels)[:, 1:]
    expected = (-y * (1 - p) ** 2 * p.log()).mean()
    _close(build_loss("focal", C, gamma=2.0)(logits, labels), expected)


def test_focal_term_of_dice_focal_by_hand(batch):
    """MONAI's DiceFocalLoss takes its focal term one-vs-rest on sigmoids (Lin 2017, eq. 5):
    mean over voxels and foreground classes of -(1 - p_t)^gamma log p_t."""
    logits, labels = batch
    p = logits.sigmoid()[:, 1:]
    y = _onehot(labels)[:, 1:]
    p_t = torch.where(y > 0, p, 1 - p)
    expected = (-((1 - p_t) ** 2) * p_t.log()).mean()
    _close(build_loss("dice_focal", C, lambda_dice=0.0)(logits, labels), expected)


def _soft_dice_terms(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    p, y = logits.softmax(1)[:, 1:], _onehot(labels)[:, 1:]
    dims = (0, *range(2, p.ndim))  # batch Dice: sums over the batch and space, per class
    return (p * y).sum(dims), (p * (1 - y)).sum(dims), ((1 - p) * y).sum(dims)


def test_dice_by_hand(batch):
    """Milletari 2016: 1 - (2 sum p g + eps) / (sum p + sum g + eps), mean over foreground classes."""
    logits, labels = batch
    tp, fp, fn = _soft_dice_terms(logits, labels)
    expected = (1 - (2 * tp + 1e-5) / (2 * tp + fp + fn + 1e-5)).mean()
    _close(build_loss("dice_focal", C, lambda_focal=0.0)(logits, labels), expected)
    _close(build_loss("dice_ce", C, lambda_ce=0.0)(logits, labels), expected)


@pytest.mark.parametrize(("alpha", "beta"), [(0.3, 0.7), (0.5, 0.5), (0.9, 0.1)])
def test_tversky_by_hand(batch, alpha, beta):
    """Salehi 2017: 1 - TP / (TP + alpha FP + beta FN), mean over foreground classes."""
    logits, labels = batch
    tp, fp, fn = _soft_dice_terms(logits, labels)
    expected = (1 - (tp + 1e-5) / (tp + alpha * fp + beta * fn + 1e-5)).mean()
    _close(build_loss("tversky", C, alpha=alpha, beta=beta)(logits, labels), expected)


def test_weighted_ce_by_hand(batch):
    logits, labels = batch
    w = torch.tensor([0.2, 1.0, 3.0])
    logp = logits.log_softmax(1).gather(1, labels[:, None])[:, 0]
    expected = -(w[labels] * logp).sum() / w[labels].sum()
    _close(build_loss("ce", C, class_weights=w.tolist())(logits, labels), expected)


@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        ("dice_focall", {}, "unknown loss.name 'dice_focall' (did you mean 'dice_focal'?)"),
        ("dice", {}, "did you mean 'dice_ce'?"),
        ("crossentropy", {}, "unknown loss.name 'crossentropy'"),
        ("dice_focal", {"gama": 2}, "unknown key loss.params.gama (did you mean 'gamma'?)"),
        ("tversky", {"alpah": 0.5}, "unknown key loss.params.alpah (did you mean 'alpha'?)"),
        ("focal", {"gamma": -1}, "loss.params for loss 'focal': gamma"),
        ("ce", {"class_weights": [1.0, 2.0]}, "class_weights has 2 values for 3 classes"),
    ],
)
def test_bad_names_and_params_are_refused(name, params, needle):
    with pytest.raises(ConfigError) as err:
        build_loss(name, C, **params)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)
    if "loss.name" in needle:  # the valid names are listed, no silent cross-entropy
        assert "dice_focal, dice_ce, focal, ce, tversky" in str(err.value)


@pytest.mark.parametrize("batch_dice", [True, False])
def test_region_dice_bce_is_monai_sigmoid_dice_plus_bce(batch, batch_dice):
    """Region targets [B, R, *S] (overlapping): MONAI's DiceLoss(sigmoid=True) + BCE with logits."""
    from monai.losses import DiceLoss

    from medseg.config.schema import RegionConfig
    from medseg.losses.region_dice_bce import RegionTargets

    logits, labels = batch
    regions = [
        RegionConfig(name="any", labels=[1, 2], value=1),
        RegionConfig(name="two", labels=[2], value=2),
    ]
    logits = logits[:, :2]
    targets = torch.stack([(labels >= 1), (labels == 2)], 1).float()
    dice = DiceLoss(sigmoid=True, include_background=True, batch=batch_dice)(logits, targets)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    loss = build_loss("region_dice_bce", 2, batch_dice=batch_dice)
    _close(loss(logits, targets), dice + bce)
    _close(RegionTargets(loss, regions)(logits, labels), dice + bce)  # integer labels converted
    _close(
        build_loss("region_dice_bce", 2, lambda_dice=0.5, lambda_bce=2.0)(logits, targets),
        0.5 * DiceLoss(sigmoid=True, batch=True)(logits, targets) + 2.0 * bce,
    )


def test_region_dice_bce_weights_by_hand(batch):
    """Per-region weights on both terms: mean over regions of w_r (1 - Dice_r) + mean of w_r BCE."""
    logits, labels = batch
    y = _onehot(labels)
    w = torch.tensor([0.5, 1.0, 2.0])
    p = logits.sigmoid()
    dims = (0, 2, 3, 4)
    dice = 1 - (2 * (p * y).sum(dims) + 1e-5) / (p.sum(dims) + y.sum(dims) + 1e-5)
    bce = -(y * p.log() + (1 - y) * (1 - p).log())
    expected = (w * dice).mean() + (bce * w.view(1, 3, 1, 1, 1)).mean()
    _close(build_loss("region_dice_bce", C, class_weights=w.tolist())(logits, y), expected)
