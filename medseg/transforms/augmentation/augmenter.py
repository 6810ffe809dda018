"""The per-patch augmentation of a pipeline, built from its ``augmentation`` config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medseg.transforms.augmentation.color import random_color_jitter
from medseg.transforms.augmentation.intensity import (
    random_channel_dropout,
    random_channel_substitution,
    random_intensity,
)
from medseg.transforms.augmentation.spatial import SpatialParams, random_spatial_params, sample_patch


class Augmenter:
    """Draws, applies and records the augmentation of one patch.

    Args:
        config: An :class:`~medseg.config.AugmentationConfig` (or None for no augmentation).
        nd: Spatial dimensions of the patches (2 or 3).
        patch_size: Patch size per axis.
    """

    def __init__(self, config: Any | None, nd: int, patch_size: Sequence[int]) -> None:
        if nd not in (2, 3):
            raise ValueError(f"nd must be 2 or 3, got {nd}")
        self.config = config
        self.nd = nd
        self.patch_size = [int(p) for p in patch_size]

    @property
    def enabled(self) -> bool:
        return self.config is not None and bool(self.config.enabled)

    def __call__(
        self,
        image: torch.Tensor,
        label: torch.Tensor | None,
        center: Sequence[float],
        rng: np.random.Generator,
        spacing: Sequence[float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
        """Return the augmented patch, its label and the record of what was applied."""
        if not self.enabled:
            img, lab = sample_patch(image, label, center, self.patch_size, SpatialParams(), spacing)
            return img, lab, []
        c = self.config
        params = random_spatial_params(
            rng,
            self.nd,
            self.patch_size,
            rotation_p=c.rotation_p,
            rotation_degrees=c.rotation_degrees,
            scaling_p=c.scaling_p,
            scaling_range=tuple(c.scaling_range),
            elastic_p=c.elastic_p,
            elastic_sigma=c.elastic_sigma,
            elastic_magnitude=c.elastic_magnitude,
            flip_p=c.flip_p,
            flip_axes=c.flip_axes,
        )
        img, lab = sample_patch(image, label, center, self.patch_size, params, spacing)
        applied = [{"name": "Spatial", **params.to_dict()}]
        for t in random_intensity(
            rng,
            gamma_p=c.gamma_p,
            gamma_range=tuple(c.gamma_range),
            contrast_p=c.contrast_p,
            contrast_range=tuple(c.contrast_range),
            brightness_p=c.brightness_p,
            brightness_range=tuple(c.brightness_range),
            noise_p=c.noise_p,
            noise_std=c.noise_std,
            blur_p=c.blur_p,
            blur_sigma=tuple(c.blur_sigma),
        ):
            img = t(img)
            applied.append(t.to_dict())
        jitter = random_color_jitter(
            rng, img.shape[0], c.color_jitter_p, tuple(c.color_jitter_range), c.color_jitter_mix
        )
        if jitter is not None:  # per channel, after the transforms that change every channel alike
            img = jitter(img)
            applied.append(jitter.to_dict())
        patterns = [(s.source, tuple(s.replaced)) for s in c.channel_substitutions]
        substitution = random_channel_substitution(rng, c.channel_substitution_p, patterns)
        if substitution is not None:  # after noise and jitter: copies stay exact, as in the data
            img = substitution(img)
            applied.append(substitution.to_dict())
        dropout = random_channel_dropout(rng, img.shape[0], c.channel_dropout_p, c.channel_dropout_max)
        if dropout is not None:  # last: dropped channels stay exactly 0 (the normalised mean)
            img = dropout(img)
            applied.append(dropout.to_dict())
        return img, lab, applied
