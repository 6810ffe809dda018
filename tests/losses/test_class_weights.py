"""Class weights from label frequencies: worked by hand, recorded in the config, used by the loss."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medseg.config.load import config_from_dict
from medseg.config.schema import RegionConfig
from medseg.errors import ConfigError
from medseg.losses.class_weights import class_weights, count_classes
from medseg.training.loss_setup import build_training_loss, resolve_class_weights

# case A: 4 voxels, one of class 1; case B: 6 voxels, three of class 2
LABELS = [np.array([[0, 0], [0, 1]]), np.array([0, 0, 2, 2, 2, 0])]


def _config(weighting: str = "median_frequency", **params) -> object:
    return config_from_dict(
        {
            "name": "t",
            "data": {"manifest": "m.json"},
            "model": {"name": "unet", "spatial_dims": 2},
            "loss": {"name": "ce", "class_weighting": weighting, "params": params},
            "training": {"patch_size": [8, 8]},
        }
    )


def _cases(labels=LABELS):
    return [SimpleNamespace(label=torch.from_numpy(np.asarray(x, dtype=np.uint8))) for x in labels]


def test_frequencies_and_weights_worked_by_hand():
    freq = count_classes(LABELS, 3)
    np.testing.assert_array_equal(freq.counts, [6, 1, 3])
    np.testing.assert_array_equal(freq.present_voxels, [10, 4, 6])  # voxels of the cases holding c
    assert freq.total == 10 and freq.absent == []
    # Eigen & Fergus: f = 6/10, 1/4, 3/6; median 0.5
    np.testing.assert_allclose(class_weights(freq, "median_frequency"), [0.5 / 0.6, 2.0, 1.0])
    # ENet: p = 6/10, 1/10, 3/10
    enet = [1 / math.log(1.02 + p) for p in (0.6, 0.1, 0.3)]
    np.testing.assert_allclose(class_weights(freq, "enet"), enet)
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights(freq, "inverse")


def test_regions_count_the_union_of_their_labels_and_bad_labels_are_refused():
    freq = count_classes(LABELS, None, groups=[[1, 2], [2]])
    np.testing.assert_array_equal(freq.counts, [4, 3])
    np.testing.assert_array_equal(freq.present_voxels, [10, 6])
    np.testing.assert_allclose(class_weights(freq, "median_frequency"), [0.45 / 0.4, 0.45 / 0.5])
    with pytest.raises(ValueError, match="label value 2 is outside the 2 classes"):
        count_classes(LABELS, 2)
    with pytest.raises(ValueError, match="no label arrays"):
        count_classes([], 3)


def test_resolve_records_the_weights_in_the_config(caplog):
    cfg = _config("enet")
    with caplog.at_level(logging.INFO, logger="medseg.training.loss_setup"):
        w = resolve_class_weights(cfg, _cases(), 3, None, {0: "background", 1: "liver", 2: "tumour"})
    assert w == cfg.loss.params["class_weights"]
    np.testing.assert_allclose(w, [1 / math.log(1.02 + p) for p in (0.6, 0.1, 0.3)], rtol=1e-5)
    assert (
        "class weights (enet, 2 training cases): background 2.073, liver 8.824, tumour 3.602" in caplog.text
    )
    assert "class_weights" in cfg.model_dump(mode="json")["loss"]["params"]  # what config.yaml gets
    cfg = _config("none", class_weights=[1.0, 2.0, 3.0])
    assert resolve_class_weights(cfg, _cases(), 3, None) is None
    assert cfg.loss.params["class_weights"] == [1.0, 2.0, 3.0]  # untouched


def test_absent_class_gets_weight_zero_and_a_warning(caplog):
    cfg = _config("median_frequency", class_weights=[1.0, 1.0, 1.0, 1.0])
    with caplog.at_level(logging.INFO, logger="medseg.training.loss_setup"):
        w = resolve_class_weights(cfg, _cases(), 4, None, {3: "cyst"})
    np.testing.assert_allclose(w, [0.5 / 0.6, 2.0, 1.0, 0.0], rtol=1e-5)
    assert "cyst has no voxel in the 2 training cases: its weight is 0" in caplog.text
    assert "replaces loss.params.class_weights" in caplog.text
    with pytest.raises(ConfigError, match="label value 2 is outside the 2 classes"):
        resolve_class_weights(_config(), _cases(), 2, None)


def test_regions_get_one_weight_per_region():
    cfg = _config()
    regions = [
        RegionConfig(name="whole", labels=[1, 2], value=1),
        RegionConfig(name="core", labels=[2], value=2),
    ]
    w = resolve_class_weights(cfg, _cases(), 2, regions)
    np.testing.assert_allclose(w, [0.45 / 0.4, 0.45 / 0.5], rtol=1e-5)


def test_weighted_ce_equals_torch_cross_entropy_with_the_computed_weights():
    cfg = _config()
    resolve_class_weights(cfg, _cases(), 3, None)
    loss = build_training_loss(cfg, 3, None)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((2, 3, 5, 6), generator=g)
    labels = torch.randint(0, 3, (2, 5, 6), generator=g)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([0.5 / 0.6, 2.0, 1.0]))
    torch.testing.assert_close(loss(logits, labels), expected, rtol=1e-5, atol=1e-6)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert not torch.isclose(loss(logits, labels), plain)


def test_schema_rejects_an_unknown_scheme():
    with pytest.raises(ConfigError, match="class_weighting"):
        _config("inverse")
