"""The contract every row of ``LOSSES`` keeps: finite values and gradients in 2D and 3D, zero at a
perfect prediction (where ``perfect_zero``), absent classes handled, deep supervision weighted."""

from __future__ import annotations

import pytest
import torch

from medseg.losses import LOSSES, DeepSupervision, LossSpec, build_loss

N_CLASSES = 3
SPECS = [pytest.param(spec, id=name) for name, spec in LOSSES.items()]
DIMS = [pytest.param((12, 10), id="2d"), pytest.param((8, 6, 4), id="3d")]
#: the common switches each loss must survive (per-sample Dice and background are the fragile cases)
VARIANTS = [{}, {"batch_dice": False, "include_background": True}]


def _labels(spatial: tuple[int, ...], seed: int = 0, n_classes: int = N_CLASSES) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (2, *spatial), generator=g)
    labels.view(2, -1)[:, :n_classes] = torch.arange(n_classes)  # every class present in every sample
    return labels


def _confident(labels: torch.Tensor, right: bool = True) -> torch.Tensor:
    """Logits +40 on the true class and -40 elsewhere (perfect for softmax and for per-class
    sigmoid, which the focal term of MONAI's DiceFocalLoss uses); ``right=False`` shifts the class."""
    onehot = torch.nn.functional.one_hot(labels, N_CLASSES).movedim(-1, 1).float()
    return 40.0 * (2 * (onehot if right else onehot.roll(1, dims=1)) - 1)


def _logits(spatial: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, N_CLASSES, *spatial, generator=g).requires_grad_()


def _value_and_grad(loss: torch.nn.Module, logits: torch.Tensor, labels: torch.Tensor):
    value = loss(logits, labels)
    (grad,) = torch.autograd.grad(value, logits)
    return value, grad


@pytest.mark.parametrize("spatial", DIMS)
@pytest.mark.parametrize("params", VARIANTS)
@pytest.mark.parametrize("spec", SPECS)
def test_finite_value_and_gradient_on_random_logits(spec: LossSpec, spatial, params):
    loss = build_loss(spec.name, N_CLASSES, **params)
    labels = _labels(spatial)
    value, grad = _value_and_grad(loss, _logits(spatial), labels)
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # labels given as [B, 1, *spatial] mean the same
    assert torch.allclose(loss(_logits(spatial), labels[:, None]), value)


@pytest.mark.parametrize("spatial", DIMS)
@pytest.mark.parametrize("params", VARIANTS)
@pytest.mark.parametrize("spec", [p for p in SPECS if p.values[0].perfect_zero])
def test_zero_at_a_perfect_prediction(spec: LossSpec, spatial, params):
    labels = _labels(spatial)
    perfect = build_loss(spec.name, N_CLASSES, **params)(_confident(labels), labels)
    assert abs(float(perfect)) < 1e-4
    wrong = build_loss(spec.name, N_CLASSES, **params)(_confident(labels, right=False), labels)
    assert float(wrong) > 0.1  # the test can fail: a confidently wrong prediction costs


@pytest.mark.parametrize("spatial", DIMS)
@pytest.mark.parametrize("params", VARIANTS)
@pytest.mark.parametrize("spec", SPECS)
def test_a_class_absent_from_the_batch(spec: LossSpec, spatial, params):
    labels = _labels(spatial, n_classes=2)  # class 2 never occurs
    loss = build_loss(spec.name, N_CLASSES, **params)
    value, grad = _value_and_grad(loss, _logits(spatial), labels)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    value, grad = _value_and_grad(loss, _confident(labels).requires_grad_(), labels)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    if spec.perfect_zero:
        assert abs(value.item()) < 1e-4  # predicting the absent class nowhere is perfect


@pytest.mark.parametrize("weights", [None, [1.0, 0.3, 0.2]])
@pytest.mark.parametrize("spatial", DIMS)
@pytest.mark.parametrize("spec", SPECS)
def test_deep_supervision_is_the_weighted_sum(spec: LossSpec, spatial, weights):
    loss = build_loss(spec.name, N_CLASSES)
    full = tuple(2 * s for s in spatial)  # full resolution, then / 2, then / 4 (divisible by 8)
    labels = _labels(full)
    outputs = [_logits(tuple(s // f for s in full), seed=f) for f in (1, 2, 4)]
    got = DeepSupervision(loss, weights)(outputs, labels)
    w = weights or [1.0, 0.5, 0.25]  # default: halving per level
    index = [(slice(None),) + (slice(None, None, f),) * len(full) for f in (1, 2, 4)]
    parts = [loss(out, labels[idx]) for out, idx in zip(outputs, index)]  # nearest = every f-th voxel
    expected = sum(wi * p for wi, p in zip(w, parts)) / sum(w)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(DeepSupervision(loss, weights)(outputs[0], labels), parts[0])


def test_deep_supervision_needs_a_weight_per_output():
    loss = build_loss("ce", N_CLASSES)
    outputs = [_logits((8, 8)), _logits((4, 4))]
    with pytest.raises(ValueError, match="2 outputs but 1 deep-supervision weights"):
        DeepSupervision(loss, [1.0])(outputs, _labels((8, 8)))


@pytest.mark.parametrize("spec", SPECS)
def test_every_row_is_complete(spec: LossSpec):
    assert spec.description and spec.paper
    assert LOSSES[spec.name] is spec
    assert {"class_weights", "include_background", "batch_dice"} <= set(spec.params_model.model_fields)
