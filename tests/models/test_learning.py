"""Every registered model, with its small example parameters, learns a synthetic 3D task from
scratch on the CPU.

Task: 32^3 volumes with one or two randomly rotated bright ellipsoids (intensity 1,
radii 5-9 voxels) in Gaussian noise (sigma 0.6); label 1 inside the ellipsoids, 0
elsewhere. No voxelwise threshold reaches a Dice of 0.5 on it (checked below), so a
model must learn to use spatial context. Training draws fresh volumes from a seeded
generator; Dice is measured on four held-out volumes from another seed. Models registered for
2D only learn the same task in 2D (64^2 images, ellipses; see the end of this module).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from medseg.models import MODELS, build_model

SIZE = 32
SIGMA = 0.6


def make_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image and its binary label."""
    grid = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij"), -1).astype(np.float32)
    label = np.zeros((SIZE,) * 3, dtype=bool)
    for _ in range(rng.integers(1, 3)):
        centre = rng.uniform(9, SIZE - 9, 3)
        radii = rng.uniform(5, 9, 3)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        local = (grid - centre) @ rotation
        label |= ((local / radii) ** 2).sum(-1) <= 1
    image = label.astype(np.float32) + rng.normal(0, SIGMA, label.shape).astype(np.float32)
    return image, label


def make_batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    cases = [make_case(rng) for _ in range(n)]
    x = torch.from_numpy(np.stack([c[0] for c in cases])[:, None])
    y = torch.from_numpy(np.stack([c[1] for c in cases])[:, None].astype(np.int64))
    return x, y


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(2 * (pred & ref).sum() / (pred.sum() + ref.sum()))


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(np.random.default_rng(99), 4)


def test_task_needs_spatial_context(held_out):
    """The best single-voxel intensity threshold stays far below the bar the models must reach."""
    x, y = held_out
    ref = y[:, 0].numpy().astype(bool)
    best = max(
        np.mean([dice(x[i, 0].numpy() > t, ref[i]) for i in range(len(ref))]) for t in np.linspace(0, 2, 41)
    )
    assert best < 0.5


def _loss(out: torch.Tensor | list[torch.Tensor], y: torch.Tensor, loss_fn: DiceCELoss) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return loss_fn(out, y)
    # deep supervision: aux outputs against the label downsampled to their size, halving weights
    total = loss_fn(out[0], y)
    for k, aux in enumerate(out[1:], start=1):
        small = F.interpolate(y.float(), size=aux.shape[2:], mode="nearest").long()
        total = total + 0.5**k * loss_fn(aux, small)
    return total


STEPS = 80


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if spec.supports_3d])
def test_model_learns_synthetic_ellipsoids(name, held_out):
    """Every registered 3D model, with its small example parameters, learns the task."""
    steps = STEPS
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model(name, 3, 1, 2, **MODELS[name].example(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps, pct_start=0.2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(steps):
        x, y = make_batch(rng, 2)
        loss = _loss(model(x), y, loss_fn)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()

    x, y = held_out
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1).numpy().astype(bool)
    scores = [dice(pred[i], y[i, 0].numpy().astype(bool)) for i in range(len(pred))]
    assert np.mean(scores) > 0.9, f"{name}: held-out Dice {np.round(scores, 3)}"


# ----------------------------------------------------------------------------- 2D-only models
# The same task in 2D for models registered without 3D: 64^2 images with one or two randomly
# rotated bright ellipses (radii 6-12 pixels) in Gaussian noise (sigma 0.6).
SIZE_2D = 64


def make_case_2d(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic 2D image and its binary label."""
    grid = np.stack(np.meshgrid(*[np.arange(SIZE_2D)] * 2, indexing="ij"), -1).astype(np.float32)
    label = np.zeros((SIZE_2D,) * 2, dtype=bool)
    for _ in range(rng.integers(1, 3)):
        centre = rng.uniform(12, SIZE_2D - 12, 2)
        radii = rng.uniform(6, 12, 2)
        angle = rng.uniform(0, np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        local = (grid - centre) @ rotation
        label |= ((local / radii) ** 2).sum(-1) <= 1
    image = label.astype(np.float32) + rng.normal(0, SIGMA, label.shape).astype(np.float32)
    return image, label


def make_batch_2d(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    cases = [make_case_2d(rng) for _ in range(n)]
    x = torch.from_numpy(np.stack([c[0] for c in cases])[:, None])
    y = torch.from_numpy(np.stack([c[1] for c in cases])[:, None].astype(np.int64))
    return x, y


@pytest.fixture(scope="module")
def held_out_2d() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch_2d(np.random.default_rng(99), 8)


def test_2d_task_needs_spatial_context(held_out_2d):
    """As in 3D, no single-pixel threshold comes near the bar."""
    x, y = held_out_2d
    ref = y[:, 0].numpy().astype(bool)
    best = max(
        np.mean([dice(x[i, 0].numpy() > t, ref[i]) for i in range(len(ref))]) for t in np.linspace(0, 2, 41)
    )
    assert best < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if not spec.supports_3d])
def test_2d_only_model_learns_synthetic_ellipses(name, held_out_2d):
    """Every registered 2D-only model, with its small example parameters, learns the 2D task."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model(name, 2, 1, 2, **MODELS[name].example(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=STEPS, pct_start=0.2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(STEPS):
        x, y = make_batch_2d(rng, 4)
        loss = _loss(model(x), y, loss_fn)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()

    x, y = held_out_2d
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1).numpy().astype(bool)
    scores = [dice(pred[i], y[i, 0].numpy().astype(bool)) for i in range(len(pred))]
    assert np.mean(scores) > 0.9, f"{name}: held-out Dice {np.round(scores, 3)}"
