"""CT windowing: named presets and custom level/width windows.

A window maps Hounsfield units in ``[level - width/2, level + width/2]``
linearly onto an output range (``[0, 1]`` by default) and clips outside it.
Each operation is both a function (:func:`apply_window`) and a class
(:class:`CTWindow`) for use in pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from medseg.errors import ConfigError


class WindowPreset(str, Enum):
    """Named CT windows (level/width in HU, common radiology values)."""

    BRAIN = "brain"
    SUBDURAL = "subdural"
    STROKE = "stroke"
    TEMPORAL_BONE = "temporal_bone"
    SOFT_TISSUE = "soft_tissue"
    ABDOMEN = "abdomen"
    LIVER = "liver"
    LUNG = "lung"
    MEDIASTINUM = "mediastinum"
    BONE = "bone"


@dataclass(frozen=True)
class Window:
    """A CT window: centre ``level`` and ``width`` in HU."""

    level: float
    width: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.level) or not np.isfinite(self.width) or self.width <= 0:
            raise ValueError(f"window width must be a positive number, got {self.width}")

    @property
    def low(self) -> float:
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        return self.level + self.width / 2.0


#: Level/width (HU) of each preset.
WINDOW_PRESETS: dict[WindowPreset, Window] = {
    WindowPreset.BRAIN: Window(40, 80),
    WindowPreset.SUBDURAL: Window(75, 215),
    WindowPreset.STROKE: Window(40, 40),
    WindowPreset.TEMPORAL_BONE: Window(600, 2800),
    WindowPreset.SOFT_TISSUE: Window(50, 400),
    WindowPreset.ABDOMEN: Window(40, 400),
    WindowPreset.LIVER: Window(30, 150),
    WindowPreset.LUNG: Window(-600, 1500),
    WindowPreset.MEDIASTINUM: Window(50, 350),
    WindowPreset.BONE: Window(400, 1800),
}


def parse_window(spec: str | Window | WindowPreset) -> Window:
    """A window from a preset name (``"lung"``), ``"L,W"`` (``"40,400"``) or a Window.

    Raises:
        ConfigError: an unknown name or a malformed ``L,W`` pair.
    """
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, WindowPreset):
        return WINDOW_PRESETS[spec]
    text = str(spec).strip().lower()
    try:
        return WINDOW_PRESETS[WindowPreset(text.replace("-", "_").replace(" ", "_"))]
    except ValueError:
        pass
    parts = text.split(",")
    if len(parts) == 2:
        try:
            return Window(float(parts[0]), float(parts[1]))
        except ValueError as exc:
            raise ConfigError(f"bad window {spec!r}: {exc}", hint="use L,W with W > 0") from exc
    names = ", ".join(p.value for p in WindowPreset)
    raise ConfigError(
        f"unknown window {spec!r}",
        hint=f"use a preset ({names}) or a level,width pair such as 40,400",
    )


def apply_window(
    array: np.ndarray,
    window: str | Window | WindowPreset,
    out_range: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Clip ``array`` (HU) to ``window`` and rescale linearly to ``out_range`` (float32)."""
    w = parse_window(window)
    lo, hi = out_range
    scaled = (np.asarray(array, dtype=np.float32) - np.float32(w.low)) / np.float32(w.width)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    if (lo, hi) != (0.0, 1.0):
        scaled = scaled * np.float32(hi - lo) + np.float32(lo)
    return scaled


@dataclass(frozen=True)
class CTWindow:
    """Callable form of :func:`apply_window`, for pipelines."""

    window: str | Window | WindowPreset
    out_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        parse_window(self.window)  # validate early

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return apply_window(array, self.window, self.out_range)
