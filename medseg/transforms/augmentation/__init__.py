"""Augmentation applied identically to image and label.

Every random transform draws its parameters from a NumPy generator and hands them
to a deterministic twin (:class:`SpatialParams` + :func:`sample_patch`, and the
intensity dataclasses), so what was applied is recorded and can be replayed.
"""

from medseg.transforms.augmentation.augmenter import Augmenter
from medseg.transforms.augmentation.intensity import (
    Brightness,
    ChannelDropout,
    Contrast,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    IntensityTransform,
)
from medseg.transforms.augmentation.spatial import SpatialParams, random_spatial_params, sample_patch

__all__ = [
    "Augmenter",
    "Brightness",
    "ChannelDropout",
    "Contrast",
    "Gamma",
    "GaussianBlur",
    "GaussianNoise",
    "IntensityTransform",
    "SpatialParams",
    "random_spatial_params",
    "sample_patch",
]
