"""CutMix: the twin pastes one box from the partner (image and label alike); the draw is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from medseg.config.load import config_from_dict
from medseg.config.schema import AugmentationConfig
from medseg.transforms.augmentation import BatchCutMix, CutMix, random_cutmix
from medseg.transforms.augmentation import cutmix as cutmix_module


def _batch(b: int = 4, c: int = 2, spatial=(6, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    """Image voxel values encode (patch, channel, position); label = patch index + 1 everywhere."""
    n = int(np.prod(spatial))
    image = torch.arange(b * c * n, dtype=torch.float32).reshape(b, c, *spatial)
    label = (torch.arange(b)[:, None] + 1).expand(b, n).reshape(b, *spatial).clone()
    return image, label


def test_twin_pastes_the_partners_box_into_image_and_label():
    image, label = _batch()
    mix = CutMix(start=(1, 2), stop=(4, 6), partner=(2, 0, 3, 1))
    out, lab = mix(image, label)
    inside = np.zeros((6, 7), bool)
    inside[1:4, 2:6] = True  # box worked by hand: rows 1..3, columns 2..5
    assert mix.volume == 12 == inside.sum()
    for i, j in enumerate(mix.partner):
        for c in range(2):
            np.testing.assert_array_equal(out[i, c].numpy()[inside], image[j, c].numpy()[inside])
            np.testing.assert_array_equal(out[i, c].numpy()[~inside], image[i, c].numpy()[~inside])
        # the label comes from the same patch and the same box as the image
        assert set(lab[i].numpy()[inside].tolist()) == {j + 1}
        assert set(lab[i].numpy()[~inside].tolist()) == {i + 1}
    assert torch.equal(image, _batch()[0]) and torch.equal(label, _batch()[1])  # inputs untouched
    assert mix.to_dict() == {"name": "CutMix", "start": [1, 2], "stop": [4, 6], "partner": [2, 0, 3, 1]}
    with pytest.raises(ValueError, match="partners"):
        CutMix((0, 0), (1, 1), (1, 0))(image, label)


def test_twin_works_in_3d():
    image, label = _batch(3, 1, (4, 5, 6))
    out, lab = CutMix((0, 1, 2), (2, 5, 3), (1, 2, 0))(image, label)
    assert torch.equal(out[0, :, 0:2, 1:5, 2:3], image[1, :, 0:2, 1:5, 2:3])
    assert torch.equal(lab[2, 0:2, 1:5, 2:3], label[0, 0:2, 1:5, 2:3])
    assert int((lab != label).sum()) == 3 * 2 * 4 * 1


@pytest.mark.parametrize(("spatial", "alpha"), [((32, 32), 1.0), ((16, 20, 12), 0.5), ((9, 40), 2.0)])
def test_draw_box_size_position_and_partners(spatial, alpha):
    shares = []
    for seed in range(200):
        mix = random_cutmix(np.random.default_rng(seed), 5, spatial, 1.0, alpha)
        replay = np.random.default_rng(seed)
        replay.random()  # the p draw
        share = replay.beta(alpha, alpha)
        shares.append(share)
        sides = [int(min(s, round(s * share ** (1 / len(spatial))))) for s in spatial]
        assert [z - a for a, z in zip(mix.start, mix.stop)] == sides  # side = size * share^(1/nd)
        assert all(0 <= a <= z <= s for a, z, s in zip(mix.start, mix.stop, spatial))  # inside
        assert abs(mix.volume / np.prod(spatial) - share) < 0.25  # up to rounding of the sides
        assert sorted(mix.partner) == list(range(5))  # every patch lends its box once
        assert all(j != i for i, j in enumerate(mix.partner))  # never its own
        seen, k = set(), 0
        for _ in range(5):  # one cycle through the whole batch
            seen.add(k)
            k = mix.partner[k]
        assert seen == set(range(5)) and k == 0
    assert abs(np.mean(shares) - 0.5) < 0.05  # Beta(a, a) has mean 1/2


def test_p_zero_draws_nothing_and_batches_are_reproducible():
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    assert random_cutmix(rng, 4, (8, 8), 0.0) is None
    assert random_cutmix(rng, 1, (8, 8), 1.0) is None  # a lone patch has no partner
    assert rng.bit_generator.state == before
    image, label = _batch()
    off = BatchCutMix(AugmentationConfig(), seed=3)  # default cutmix_p = 0
    assert off(image, label, 0, 0)[0] is image
    assert (
        BatchCutMix(AugmentationConfig(enabled=False, cutmix_p=1.0), seed=3)(image, label, 0, 0)[1] is label
    )
    on = BatchCutMix(AugmentationConfig(cutmix_p=1.0), seed=3)
    a, b = on(image, label, 2, 7), on(image, label, 2, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], label)
    other = [on(image, label, 2, i)[1] for i in range(8)]
    assert any(not torch.equal(o, a[1]) for o in other)  # batches draw their own boxes
    half = BatchCutMix(AugmentationConfig(cutmix_p=0.5), seed=3)
    mixed = [not torch.equal(half(image, label, 0, i)[1], label) for i in range(200)]
    assert 0.35 < np.mean(mixed) < 0.65


def test_trainer_step_with_cutmix_and_median_frequency_weights(tmp_path, monkeypatch):
    from medseg.training import Trainer
    from tests.fixtures.synthetic_dataset import pipeline_dict, write_2d_dataset

    calls = []
    real = cutmix_module.CutMix.__call__
    monkeypatch.setattr(cutmix_module.CutMix, "__call__", lambda s, *a: calls.append(s) or real(s, *a))
    manifest = write_2d_dataset(tmp_path / "d2", n=3, size=40)
    d = pipeline_dict(manifest, tmp_path / "cache", "unet", 2, {"features": [4, 8]}, epochs=1)
    d["training"].update(iterations_per_epoch=2, patch_size=[32, 32])
    d["augmentation"] = {"cutmix_p": 1.0}
    d["loss"] = {"name": "dice_ce", "class_weighting": "median_frequency"}
    trainer = Trainer(config_from_dict(d), tmp_path / "run", device="cpu")
    row = trainer.fit()
    assert np.isfinite(row["train_loss"]) and len(calls) == 2  # every batch was mixed
    # the weights recorded in config.yaml, worked out by brute force over the training labels
    labels = [c.label.numpy() for c in trainer.data.train]
    f = [
        sum((lab == k).sum() for lab in labels) / sum(lab.size for lab in labels if (lab == k).any())
        for k in (0, 1)
    ]
    expected = [np.median(f) / fk for fk in f]
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["loss"]
    assert recorded["class_weighting"] == "median_frequency"
    np.testing.assert_allclose(recorded["params"]["class_weights"], expected, rtol=1e-5)
