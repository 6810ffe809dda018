"""Augmentation applied identically to image and label.

Every random transform draws its parameters from a NumPy generator and hands them
to a deterministic twin (:class:`SpatialParams` + :func:`sample_patch`, and the
intensity dataclasses, :class:`ColorJitter`, and :class:`CutMix` on whole batches), so what was
applied is recorded and can be replayed.
"""

from medseg.transforms.augmentation.augmenter import Augmenter
from medseg.transforms.augmentation.color import ColorJitter, random_color_jitter
from medseg.transforms.augmentation.cutmix import BatchCutMix, CutMix, random_cutmix
from medseg.transforms.augmentation.intensity import (
    Brightness,
    ChannelDropout,
    ChannelSubstitution,
    Contrast,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    IntensityTransform,
)
from medseg.transforms.augmentation.spatial import SpatialParams, random_spatial_params, sample_patch

__all__ = [
    "Augmenter",
    "BatchCutMix",
    "Brightness",
    "ChannelDropout",
    "ChannelSubstitution",
    "ColorJitter",
    "Contrast",
    "CutMix",
    "Gamma",
    "GaussianBlur",
    "GaussianNoise",
    "IntensityTransform",
    "SpatialParams",
    "random_color_jitter",
    "random_cutmix",
    "random_spatial_params",
    "sample_patch",
]
