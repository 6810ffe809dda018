"""Intensity transforms: CT windowing presets and MR normalisation."""

from medseg.transforms.intensity.normalization import (
    PercentileClip,
    ZScoreNormalize,
    foreground_mask,
    percentile_clip,
    zscore_normalize,
)
from medseg.transforms.intensity.windowing import (
    WINDOW_PRESETS,
    CTWindow,
    Window,
    WindowPreset,
    apply_window,
    parse_window,
)

__all__ = [
    "WINDOW_PRESETS",
    "CTWindow",
    "PercentileClip",
    "Window",
    "WindowPreset",
    "ZScoreNormalize",
    "apply_window",
    "foreground_mask",
    "parse_window",
    "percentile_clip",
    "zscore_normalize",
]
