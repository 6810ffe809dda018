"""Augmentation: deterministic twins replay exactly; image and label stay aligned."""

from __future__ import annotations

import numpy as np
import torch

from medseg.config.schema import AugmentationConfig
from medseg.transforms.augmentation import (
    Augmenter,
    Gamma,
    GaussianBlur,
    SpatialParams,
    random_spatial_params,
    sample_patch,
)


def _volume():
    g = np.indices((30, 34, 26)).astype(np.float32)
    img = np.sin(g[0] / 4) + np.cos(g[1] / 5) + g[2] / 26
    lab = (img > 0.8).astype(np.uint8)
    return torch.from_numpy(img)[None], torch.from_numpy(lab)


def test_same_seed_same_patch_and_record():
    img, lab = _volume()
    aug = Augmenter(
        AugmentationConfig(elastic_p=1, rotation_p=1, scaling_p=1, gamma_p=1, noise_p=1), 3, (16, 20, 12)
    )
    a = aug(img, lab, (15, 17, 13), np.random.default_rng(5), (1, 1, 2))
    b = aug(img, lab, (15, 17, 13), np.random.default_rng(5), (1, 1, 2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    c = aug(img, lab, (15, 17, 13), np.random.default_rng(6), (1, 1, 2))
    assert not torch.equal(a[0], c[0])
    names = [r["name"] for r in a[2]]
    assert names[0] == "Spatial" and "Gamma" in names and "GaussianNoise" in names


def test_random_transform_delegates_to_its_twin():
    img, lab = _volume()
    rng = np.random.default_rng(3)
    params = random_spatial_params(
        rng,
        3,
        (16, 20, 12),
        rotation_p=1,
        rotation_degrees=30,
        scaling_p=1,
        scaling_range=(0.8, 1.2),
        elastic_p=1,
        elastic_sigma=5,
        elastic_magnitude=2,
        flip_p=0.5,
        flip_axes=None,
    )
    one = sample_patch(img, lab, (15, 17, 13), (16, 20, 12), params)
    two = sample_patch(img, lab, (15, 17, 13), (16, 20, 12), params)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_label_follows_image_through_spatial_transforms():
    """The label is a threshold of the image, so after any spatial transform it must still
    agree with the threshold of the transformed image (except at interpolated edges)."""
    img, lab = _volume()
    params = SpatialParams(
        rotation=[0.3, -0.2, 0.5],
        scale=1.1,
        elastic=np.random.default_rng(0).uniform(-2, 2, (3, 4, 5, 3)).astype(np.float32),
        flips=[1],
    )
    pimg, plab = sample_patch(img, lab, (15, 17, 13), (20, 22, 16), params, spacing=(1, 1, 1))
    inside = pimg[0] != 0
    agree = ((pimg[0] > 0.8) == (plab > 0))[inside].float().mean()
    assert agree > 0.97


def test_flip_and_crop_are_exact():
    img, lab = _volume()
    crop, _ = sample_patch(img, lab, (10, 10, 10), (6, 6, 6), SpatialParams())
    np.testing.assert_array_equal(crop[0].numpy(), img[0, 7:13, 7:13, 7:13].numpy())
    flipped, _ = sample_patch(img, lab, (10, 10, 10), (6, 6, 6), SpatialParams(flips=[0, 2]))
    np.testing.assert_array_equal(flipped[0].numpy(), img[0, 7:13, 7:13, 7:13].numpy()[::-1, :, ::-1])


def test_intensity_twins():
    x = torch.linspace(0, 1, 27).reshape(1, 3, 3, 3)
    np.testing.assert_allclose(Gamma(2.0)(x).numpy(), (x**2).numpy(), atol=1e-6)
    blurred = GaussianBlur(1.0)(torch.ones(1, 5, 5, 5))
    np.testing.assert_allclose(blurred.numpy(), 1.0, atol=1e-6)  # preserves constants
