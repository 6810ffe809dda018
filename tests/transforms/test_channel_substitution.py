"""Channel substitution (a missing sequence filled with a copy of another): the twin copies exactly
its source into its channels; the draw picks the configured patterns; the config and the training
setup refuse bad channel indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from medseg.config.schema import AugmentationConfig
from medseg.errors import ConfigError
from medseg.training.channel_check import check_channel_substitutions
from medseg.transforms.augmentation import Augmenter, ChannelSubstitution
from medseg.transforms.augmentation.intensity import random_channel_substitution


def _image(c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn((c, 6, 7, 5), generator=g) + torch.arange(c).view(c, 1, 1, 1) * 10.0


def test_twin_copies_the_source_into_exactly_the_replaced_channels():
    img = _image(3)
    out = ChannelSubstitution(1, (0, 2))(img)
    assert torch.equal(out[0], img[1]) and torch.equal(out[2], img[1]) and torch.equal(out[1], img[1])
    assert not torch.equal(img[0], img[1])  # the input is untouched
    only_post = ChannelSubstitution(1, (2,))(img)
    assert torch.equal(only_post[0], img[0]) and torch.equal(only_post[2], img[1])
    assert ChannelSubstitution(1, (2,)).to_dict() == {
        "name": "ChannelSubstitution",
        "source": 1,
        "replaced": [2],
    }
    with pytest.raises(IndexError, match="channel 3"):
        ChannelSubstitution(3, (0,))(img)


def test_draw_uses_only_the_given_patterns_each_of_them_and_p():
    patterns = [(1, (0, 2)), (1, (2,))]
    rng = np.random.default_rng(0)
    draws = [random_channel_substitution(rng, 0.25, patterns) for _ in range(2000)]
    picked = [d for d in draws if d is not None]
    assert 0.2 < len(picked) / len(draws) < 0.3
    assert {(d.source, d.replaced) for d in picked} == {(1, (0, 2)), (1, (2,))}
    assert all(random_channel_substitution(rng, 0.0, patterns) is None for _ in range(100))
    assert all(random_channel_substitution(rng, 1.0, []) is None for _ in range(100))
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [random_channel_substitution(r1, 0.5, patterns) for _ in range(50)] == [
        random_channel_substitution(r2, 0.5, patterns) for _ in range(50)
    ]


def test_augmenter_applies_it_after_noise_and_jitter_so_copies_stay_exact():
    """Real copies are identical voxel for voxel; per-channel noise or jitter after the copy would
    make them differ, so the substitution comes after them (and before channel dropout)."""
    cfg = AugmentationConfig(
        channel_substitution_p=1.0,
        channel_substitutions=[{"source": 1, "replaced": [0, 2]}],
        gamma_p=0,
        noise_p=1,
        blur_p=0,
        brightness_p=0,
        contrast_p=0,
        color_jitter_p=1,
        elastic_p=0,
        rotation_p=0,
        scaling_p=0,
        flip_p=0,
    )
    img, _, applied = Augmenter(cfg, 3, (4, 4, 4))(_image(3), None, (3, 3, 2), np.random.default_rng(1))
    assert [a["name"] for a in applied] == ["Spatial", "GaussianNoise", "ColorJitter", "ChannelSubstitution"]
    assert torch.equal(img[0], img[1]) and torch.equal(img[2], img[1])
    plain = AugmentationConfig(**{**cfg.model_dump(), "channel_substitution_p": 0.0})
    img0, _, applied0 = Augmenter(plain, 3, (4, 4, 4))(_image(3), None, (3, 3, 2), np.random.default_rng(1))
    assert [a["name"] for a in applied0] == ["Spatial", "GaussianNoise", "ColorJitter"]
    assert not torch.equal(img0[0], img0[1])
    assert torch.equal(img[1], img0[1])  # the source itself is what the unsubstituted patch holds


def test_config_and_setup_refuse_bad_channels():
    with pytest.raises(ValidationError, match="distinct channels other than source"):
        AugmentationConfig(channel_substitutions=[{"source": 1, "replaced": [1, 2]}])
    with pytest.raises(ValidationError):
        AugmentationConfig(channel_substitutions=[{"source": 1, "replaced": []}])
    with pytest.raises(ValidationError):
        AugmentationConfig(channel_substitutions=[{"source": 1, "replaced": [0], "p": 0.5}])  # unknown key
    ok = AugmentationConfig(channel_substitutions=[{"source": 1, "replaced": [0, 2]}]).channel_substitutions
    check_channel_substitutions(ok, ["pre", "flair", "post"])
    with pytest.raises(ConfigError, match="names channel 2, but the images have 2 channel"):
        check_channel_substitutions(ok, ["pre", "flair"])
