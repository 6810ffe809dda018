"""Per-channel colour jitter, and the intensity transforms on 2D patches."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from medseg.config.schema import AugmentationConfig
from medseg.transforms.augmentation import Augmenter, ColorJitter, intensity, random_color_jitter
from medseg.transforms.augmentation.intensity import GaussianBlur


def _rgb(spatial=(9, 11)) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand((3, *spatial), generator=g, dtype=torch.float64) * 2 - 0.5


def test_twin_matches_the_formula_worked_by_hand():
    img = _rgb()
    mix = ((0.8, 0.1, 0.1), (0.0, 0.9, 0.1), (0.05, 0.05, 0.9))
    t = ColorJitter(brightness=(1.1, 0.9, 1.0), contrast=(0.8, 1.2, 1.0), mix=mix)
    x = img.numpy()
    scaled = []
    for c, (b, k) in enumerate([(1.1, 0.8), (0.9, 1.2), (1.0, 1.0)]):
        m = x[c].mean()
        scaled.append(((x[c] - m) * k + m) * b)
    expected = np.einsum("cd,dij->cij", np.array(mix), np.stack(scaled))
    np.testing.assert_allclose(t(img).numpy(), expected, rtol=1e-12)
    plain = ColorJitter((1.1, 0.9, 1.0), (0.8, 1.2, 1.0))(img).numpy()  # no mixing
    np.testing.assert_allclose(plain, np.stack(scaled), rtol=1e-12)
    assert t.to_dict()["mix"][1] == [0.0, 0.9, 0.1]
    with pytest.raises(ValueError, match="2 channels"):
        ColorJitter((1.0, 1.0), (1.0, 1.0))(img)


def test_draw_stays_in_range_and_mixing_keeps_grey_grey():
    rng = np.random.default_rng(1)
    for _ in range(100):
        t = random_color_jitter(rng, 3, 1.0, (0.7, 1.3), mix=0.2)
        assert all(0.7 <= v <= 1.3 for v in t.brightness + t.contrast)
        m = np.array(t.mix)
        np.testing.assert_allclose(m.sum(axis=1), 1.0)
        assert np.all(m >= 0) and np.all(np.diag(m) >= 0.8 - 1e-12)
    grey = torch.full((3, 4, 4), 0.37, dtype=torch.float64)
    t = random_color_jitter(np.random.default_rng(2), 3, 1.0, (1.0, 1.0), mix=0.5)
    torch.testing.assert_close(t(grey), grey)  # factors 1 and rows summing to 1: grey stays grey
    assert random_color_jitter(np.random.default_rng(2), 3, 1.0, mix=0.0).mix is None


def test_p_zero_or_one_channel_draws_nothing_and_draws_are_reproducible():
    rng = np.random.default_rng(4)
    before = rng.bit_generator.state
    assert random_color_jitter(rng, 3, 0.0) is None
    assert random_color_jitter(rng, 1, 1.0) is None  # per-patch transforms already cover 1 channel
    assert rng.bit_generator.state == before
    a = [random_color_jitter(np.random.default_rng(9), 3, 0.5, mix=0.1) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def _augment(cfg: AugmentationConfig, image: torch.Tensor, seed: int = 0):
    return Augmenter(cfg, 2, (8, 8))(image, None, (5.0, 6.0), np.random.default_rng(seed))


def test_augmenter_applies_jitter_after_the_other_draws_unchanged():
    img = _rgb((12, 14)).float()
    base = dict(rotation_p=0.5, gamma_p=0.5, brightness_p=0.5, noise_p=0.5, blur_p=0.5)
    for seed in range(10):
        off, _, rec_off = _augment(AugmentationConfig(**base), img, seed)
        on, _, rec_on = _augment(
            AugmentationConfig(**base, color_jitter_p=1.0, color_jitter_mix=0.1), img, seed
        )
        assert rec_on[:-1] == rec_off and rec_on[-1]["name"] == "ColorJitter"  # earlier draws unchanged
        r = rec_on[-1]
        replay = ColorJitter(tuple(r["brightness"]), tuple(r["contrast"]), tuple(map(tuple, r["mix"])))
        torch.testing.assert_close(on, replay(off))


def test_intensity_transforms_apply_to_2d_patches():
    img = _rgb((12, 14)).float()
    cfg = AugmentationConfig(
        elastic_p=0, rotation_p=0, scaling_p=0, flip_p=0, gamma_p=1, contrast_p=1, brightness_p=1
    )
    out, _, rec = _augment(cfg, img, seed=3)
    names = [r["name"] for r in rec]
    assert {"Gamma", "Contrast", "Brightness"} <= set(names)
    plain, _, _ = _augment(AugmentationConfig(enabled=False), img)
    assert out.shape == plain.shape == (3, 8, 8) and not torch.allclose(out, plain)
    replay = plain
    for r in rec[1:]:  # the recorded intensity transforms, replayed on the unaugmented 2D patch
        kind = getattr(intensity, r.pop("name"))
        replay = kind(**r)(replay)
    torch.testing.assert_close(out, replay)
    # the 2D blur is scipy's Gaussian filter (edge-replicating, truncated at 3 sigma)
    blurred = GaussianBlur(1.0)(img.double()).numpy()
    for c in range(3):
        ref = scipy.ndimage.gaussian_filter(img[c].double().numpy(), 1.0, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(blurred[c], ref, atol=1e-10)
