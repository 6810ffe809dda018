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
