"""Channel dropout (modality dropout): the twin zeroes exactly its channels; the draw is bounded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.config.schema import AugmentationConfig
from medseg.transforms.augmentation import Augmenter
from medseg.transforms.augmentation.intensity import ChannelDropout, random_channel_dropout


def _image(c: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn((c, 6, 7, 5), generator=g) + 3.0


def test_twin_zeroes_exactly_the_given_channels():
    img = _image(4)
    out = ChannelDropout((1, 3))(img)
    assert torch.all(out[1] == 0) and torch.all(out[3] == 0)
    assert torch.equal(out[0], img[0]) and torch.equal(out[2], img[2])  # bit-identical
    assert not torch.all(img[1] == 0)  # the input is untouched
    assert ChannelDropout((1, 3)).to_dict() == {"name": "ChannelDropout", "channels": [1, 3]}
    with pytest.raises(IndexError, match="channel 4"):
        ChannelDropout((4,))(img)


@pytest.mark.parametrize(
    ("n", "most", "bound"), [(2, None, 1), (3, None, 2), (4, 2, 2), (3, 9, 2), (4, 1, 1)]
)
def test_draw_never_drops_all_and_respects_max(n, most, bound):
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(300):
        t = random_channel_dropout(rng, n, 1.0, most)
        assert t is not None
        assert len(set(t.channels)) == len(t.channels) and all(0 <= c < n for c in t.channels)
        sizes.add(len(t.channels))
    assert sizes == set(range(1, bound + 1))  # k is uniform in 1..max: every count shows up


def test_draw_is_reproducible_and_off_when_p_is_zero_or_one_channel():
    r1, r2 = np.random.default_rng(11), np.random.default_rng(11)
    a = [random_channel_dropout(r1, 4, 0.5) for _ in range(50)]
    b = [random_channel_dropout(r2, 4, 0.5) for _ in range(50)]
    assert a == b and any(t is None for t in a) and any(t is not None for t in a)
    rng = np.random.default_rng(0)
    assert all(random_channel_dropout(rng, 4, 0.0) is None for _ in range(200))
    assert all(random_channel_dropout(rng, 1, 1.0) is None for _ in range(20))


def test_p_one_drops_every_channel_at_some_point():
    rng = np.random.default_rng(3)
    dropped = set()
    for _ in range(100):
        dropped.update(random_channel_dropout(rng, 3, 1.0).channels)
    assert dropped == {0, 1, 2}


def _augment(cfg: AugmentationConfig, seed: int, c: int = 3):
    img = _image(c)
    return Augmenter(cfg, 3, (4, 4, 4))(img, None, (3, 3, 2), np.random.default_rng(seed))


def test_augmenter_draws_it_last_and_reproducibly():
    cfg = AugmentationConfig(channel_dropout_p=1.0, gamma_p=1, noise_p=1, elastic_p=0, rotation_p=0)
    img, _, applied = _augment(cfg, 4)
    assert applied[-1]["name"] == "ChannelDropout"
    dropped = applied[-1]["channels"]
    assert 1 <= len(dropped) <= 2
    for ch in range(3):
        assert torch.all(img[ch] == 0) == (ch in dropped)
    again, _, applied2 = _augment(cfg, 4)
    assert torch.equal(img, again) and applied == applied2
    off = AugmentationConfig(channel_dropout_p=0.0, gamma_p=1, noise_p=1)
    assert all(r["name"] != "ChannelDropout" for s in range(20) for r in _augment(off, s)[2])
    one = AugmentationConfig(channel_dropout_p=1.0)
    assert all(r["name"] != "ChannelDropout" for s in range(20) for r in _augment(one, s, c=1)[2])


def test_config_bounds():
    assert AugmentationConfig().channel_dropout_p == 0.0
    assert AugmentationConfig().channel_dropout_max is None
    with pytest.raises(ValueError):
        AugmentationConfig(channel_dropout_p=1.5)
    with pytest.raises(ValueError):
        AugmentationConfig(channel_dropout_max=0)
