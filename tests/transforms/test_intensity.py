"""CT windowing presets and MR normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.transforms.intensity import (
    WINDOW_PRESETS,
    CTWindow,
    PercentileClip,
    Window,
    WindowPreset,
    ZScoreNormalize,
    apply_window,
    parse_window,
    percentile_clip,
    zscore_normalize,
)

REQUIRED = ["brain", "subdural", "stroke", "soft_tissue", "abdomen", "liver", "lung", "mediastinum", "bone"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_presets_exist(name):
    w = parse_window(name)
    assert w.width > 0
    assert WINDOW_PRESETS[WindowPreset(name)] == w


def test_window_maps_edges_and_clips():
    hu = np.array([-1000, 0, 40, 80, 1000], dtype=np.int16)
    out = apply_window(hu, "brain")  # L40 W80 -> [0, 80]
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert out.dtype == np.float32
    np.testing.assert_allclose(apply_window(hu, "40,80", out_range=(-1, 1)), [-1, -1, 0, 1, 1])


def test_custom_window_and_errors():
    assert parse_window("-600, 1500") == Window(-600, 1500) == parse_window("lung")
    with pytest.raises(ConfigError, match="unknown window"):
        parse_window("kidneyz")
    with pytest.raises(ConfigError):
        parse_window("40,-5")
    with pytest.raises(ValueError):
        Window(0, 0)


def test_class_forms_match_functions(rng):
    x = rng.normal(0, 300, (10, 10, 10)).astype(np.float32)
    np.testing.assert_array_equal(CTWindow("liver")(x), apply_window(x, "liver"))
    np.testing.assert_array_equal(PercentileClip(1, 99)(x), percentile_clip(x, 1, 99))
    np.testing.assert_array_equal(ZScoreNormalize("all")(x), zscore_normalize(x, foreground="all"))


def test_zscore_over_foreground_ignores_background():
    img = np.zeros((20, 20, 20), np.float32)
    img[5:15, 5:15, 5:15] = np.random.default_rng(0).normal(500, 50, (10, 10, 10))
    out = zscore_normalize(img, foreground="otsu")
    fg = img > 0
    assert abs(out[fg].mean()) < 1e-4
    assert out[fg].std() == pytest.approx(1.0, rel=1e-3)
    out_nz = zscore_normalize(img, foreground="nonzero", outside=0.0)
    assert np.all(out_nz[~fg] == 0.0)


def test_percentile_clip_bounds(rng):
    x = rng.normal(size=10_000)
    y = percentile_clip(x, 5, 95)
    assert y.min() == pytest.approx(np.percentile(x, 5))
    assert y.max() == pytest.approx(np.percentile(x, 95))
    with pytest.raises(ValueError):
        percentile_clip(x, 90, 10)
