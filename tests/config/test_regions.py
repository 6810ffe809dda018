"""The ``regions`` section: validated as the config loads, every mistake refused in one line."""

from __future__ import annotations

import pytest

from medseg.config import config_from_dict
from medseg.errors import ConfigError
from medseg.training.config_check import check_registries

BASE = {
    "name": "regions",
    "labels": {0: "background", 1: "necrosis", 2: "oedema", 4: "enhancing"},
    "regions": [
        {"name": "whole tumour", "labels": [1, 2, 4], "value": 2},
        {"name": "tumour core", "labels": [1, 4], "value": 1},
        {"name": "enhancing tumour", "labels": [4], "value": 4},
    ],
    "data": {"manifest": "no_such_dir/dataset.json"},
    "model": {"name": "unet", "spatial_dims": 3, "params": {"features": [4, 8]}},
    "loss": {"name": "region_dice_bce"},
    "training": {"patch_size": [16, 16, 16], "epochs": 1},
}


def _with(**changes) -> dict:
    config = {**BASE, **changes}
    return config


def test_a_valid_regions_section_loads_in_paint_order():
    config = config_from_dict(BASE)
    check_registries(config)
    assert [(r.name, r.value) for r in config.regions] == [
        ("whole tumour", 2),
        ("tumour core", 1),
        ("enhancing tumour", 4),
    ]


@pytest.mark.parametrize(
    ("regions", "needle"),
    [
        ([], "regions: List should have at least 1 item"),
        ([{"name": "core", "labels": [], "value": 1}], "regions.0.labels: List should have at least 1 item"),
        (
            [{"name": "core", "labels": [1, 3], "value": 1}],
            "region 'core' lists label value(s) [3] that are not",
        ),
        (
            [{"name": "a", "labels": [1], "value": 1}, {"name": "b", "labels": [2], "value": 1}],
            "two regions share the value 1",
        ),
        (
            [{"name": "a", "labels": [1], "value": 1}, {"name": "a", "labels": [2], "value": 2}],
            "two regions share the name a",
        ),
        ([{"name": "core", "labels": [0, 1], "value": 1}], "region labels must be foreground values"),
        ([{"name": "core", "labels": [1], "value": 0}], "regions.0.value: Input should be greater than"),
        ([{"name": "core", "labels": [1], "value": 1, "colour": 3}], "regions.0.colour: unknown key"),
    ],
)
def test_invalid_regions_are_refused_in_one_line(regions, needle):
    with pytest.raises(ConfigError) as err:
        config_from_dict(_with(regions=regions))
    assert needle in str(err.value), str(err.value)
    assert "\n" not in str(err.value) and err.value.hint


def test_regions_with_a_softmax_loss_are_refused_before_any_data():
    config = config_from_dict(_with(loss={"name": "dice_ce"}))
    with pytest.raises(ConfigError, match=r"loss\.name: 'dice_ce' is a softmax loss") as err:
        check_registries(config)
    assert "region_dice_bce" in err.value.hint
