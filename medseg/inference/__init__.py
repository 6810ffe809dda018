"""Inference: sliding-window prediction, prediction of whole scans and of folders."""

from medseg.inference.postprocess import PostprocessOptions, postprocess
from medseg.inference.predictor import Prediction, Predictor
from medseg.inference.sliding_window import (
    BlendMode,
    SlidingWindowInferer,
    sliding_window_inference,
    sliding_window_labels,
    window_starts,
)
from medseg.inference.tta import MirrorTTA

__all__ = [
    "BlendMode",
    "MirrorTTA",
    "PostprocessOptions",
    "Prediction",
    "Predictor",
    "SlidingWindowInferer",
    "postprocess",
    "sliding_window_inference",
    "sliding_window_labels",
    "window_starts",
]
