"""Per-channel normalisation in the Plan: one scheme per channel, old plan JSON still readable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.config.schema import Normalization, PreprocessingConfig
from medseg.errors import CorruptFileError
from medseg.transforms.preprocess import Plan
from medseg.volume import Volume


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _two_channel_case(rng):
    img = np.stack([rng.normal(40, 30, (10, 12, 8)), rng.gamma(2.0, 50.0, (10, 12, 8))], axis=-1).astype(
        np.float32
    )
    lab = np.zeros((10, 12, 8), np.uint8)
    lab[2:8, 3:9, 2:6] = 1
    return Volume(img, np.eye(4)), Volume(lab, np.eye(4))


def test_zscore_and_percentile_per_channel(rng):
    image, label = _two_channel_case(rng)
    plan = Plan.from_dataset(
        [(image, label)],
        {0: "bg", 1: "t"},
        target_spacing=None,
        normalization=["zscore", "percentile"],
        crop_foreground=False,
    )
    assert plan.normalization == ["zscore", "percentile"] and plan.ct_stats is None
    pc = plan.apply(image, label)
    assert pc.image[0].mean() == pytest.approx(0.0, abs=1e-5)
    assert pc.image[0].std() == pytest.approx(1.0, abs=1e-4)
    assert pc.image[1].min() >= 0.0 and pc.image[1].max() <= 1.0
    assert set(pc.record.norm[0]) == {"mean", "std"} and set(pc.record.norm[1]) == {"lo", "hi"}
    again = Plan.from_json(plan.to_json())
    assert again == plan and json.loads(plan.to_json())["normalization"] == ["zscore", "percentile"]
    np.testing.assert_array_equal(again.apply(image, label).image, pc.image)


def test_ct_stats_only_for_ct_channels(rng):
    image, label = _two_channel_case(rng)
    plan = Plan.from_dataset([(image, label)], {0: "bg", 1: "t"}, normalization=["ct", "zscore"])
    assert plan.ct_stats[1] == {} and set(plan.ct_stats[0]) == {"lo", "hi", "mean", "std"}
    fg = image.array[..., 0][label.array > 0]
    assert plan.ct_stats[0]["lo"] == pytest.approx(np.percentile(fg, 0.5), rel=1e-6)
    pc = plan.apply(image, label)
    assert np.isfinite(pc.image).all() and pc.record.norm[1].keys() == {"mean", "std"}


def test_a_single_scheme_matches_the_same_scheme_per_channel(rng):
    image, label = _two_channel_case(rng)
    one = Plan.from_dataset([(image, label)], {0: "bg", 1: "t"}, normalization="ct")
    each = Plan.from_dataset([(image, label)], {0: "bg", 1: "t"}, normalization=["ct", "ct"])
    assert one.ct_stats == each.ct_stats
    np.testing.assert_array_equal(one.apply(image, label).image, each.apply(image, label).image)


def test_old_plan_json_with_a_string_still_loads(rng):
    image, label = _two_channel_case(rng)
    d = json.loads(Plan.from_dataset([(image, label)], {0: "bg", 1: "t"}, normalization="zscore").to_json())
    assert d["normalization"] == "zscore" and d["version"] == 1
    plan = Plan.from_json(json.dumps(d))
    assert plan.normalization == "zscore" and plan.schemes == ["zscore", "zscore"]
    assert plan.apply(image, label).image.shape[0] == 2


def test_wrong_length_list_is_refused_naming_both_counts(rng):
    image, label = _two_channel_case(rng)
    with pytest.raises(ValueError, match=r"3 scheme\(s\).*2 channel\(s\)") as err:
        Plan.from_dataset([(image, label)], {0: "bg", 1: "t"}, normalization=["zscore", "ct", "none"])
    assert "\n" not in str(err.value)
    d = json.loads(Plan(n_channels=2).to_json())
    d["normalization"] = ["zscore"]
    with pytest.raises(CorruptFileError, match=r"1 scheme\(s\).*2 channel\(s\)"):
        Plan.from_json(json.dumps(d))
    with pytest.raises(ValueError, match="unknown normalization 'hu'"):
        Plan(normalization=["hu"], n_channels=1)


def test_config_accepts_a_list_of_schemes():
    pre = PreprocessingConfig(normalization=["ct", "zscore"])
    assert pre.normalization == [Normalization.CT, Normalization.ZSCORE]
    assert pre.normalization_value == ["ct", "zscore"]
    assert PreprocessingConfig(normalization="zscore").normalization_value == "zscore"
    with pytest.raises(ValueError, match="needs a window"):
        PreprocessingConfig(normalization=["zscore", "window"])
    assert PreprocessingConfig(normalization=["zscore", "window"], window="soft_tissue").window
    with pytest.raises(ValueError):
        PreprocessingConfig(normalization=[])
    with pytest.raises(ValueError):
        PreprocessingConfig(normalization=["zscore", "hu"])
