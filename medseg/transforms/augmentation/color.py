"""Per-channel colour jitter for multi-channel (RGB: histology, endoscopy) patches.

The intensity transforms of :mod:`~medseg.transforms.augmentation.intensity` change every
channel alike; colour jitter changes each channel's contrast and brightness independently,
which shifts the colour balance (stain and white-balance variation), and optionally mixes a
little of the other channels into each (a hue-like rotation that keeps grey grey), in the
spirit of torchvision's ``ColorJitter`` on normalised intensities. Labels are never touched.
:class:`ColorJitter` is the deterministic twin; :func:`random_color_jitter` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medseg.transforms.augmentation.intensity import IntensityTransform


@dataclass(frozen=True)
class ColorJitter(IntensityTransform):
    """``out = M @ (((x_c - mean_c) * contrast[c] + mean_c) * brightness[c])`` over the channels.

    ``mean_c`` is channel ``c``'s mean over the patch; ``M`` is ``mix`` (``C x C``, rows summing
    to 1) or the identity when ``mix`` is None. No clipping. Input and output ``[C, *spatial]``.

    Raises:
        ValueError: (at call) factors or a matrix for another number of channels.
    """

    brightness: tuple[float, ...]
    contrast: tuple[float, ...]
    mix: tuple[tuple[float, ...], ...] | None = None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        if len(self.brightness) != n or len(self.contrast) != n:
            raise ValueError(f"ColorJitter has factors for {len(self.brightness)} channels, the image {n}")
        shape = (n,) + (1,) * (image.ndim - 1)
        dims = tuple(range(1, image.ndim))
        mean = image.mean(dim=dims, keepdim=True)
        k = torch.tensor(self.contrast, dtype=image.dtype).reshape(shape)
        b = torch.tensor(self.brightness, dtype=image.dtype).reshape(shape)
        out = ((image - mean) * k + mean) * b
        if self.mix is not None:
            m = torch.tensor(self.mix, dtype=image.dtype)
            if m.shape != (n, n):
                raise ValueError(f"ColorJitter mixing matrix is {tuple(m.shape)}, the image has {n} channels")
            out = torch.einsum("cd,d...->c...", m, out)
        return out

    def to_dict(self) -> dict:
        mix = None if self.mix is None else [list(r) for r in self.mix]
        return {
            "name": "ColorJitter",
            "brightness": list(self.brightness),
            "contrast": list(self.contrast),
            "mix": mix,
        }


def random_color_jitter(
    rng: np.random.Generator,
    n_channels: int,
    p: float,
    factor_range: tuple[float, float] = (0.8, 1.2),
    mix: float = 0.0,
) -> ColorJitter | None:
    """Draw the colour jitter of one patch, or None (none applied).

    With probability ``p`` (and at least 2 channels): a brightness and a contrast factor per
    channel, each uniform in ``factor_range``; with ``mix > 0``, a strength ``s`` uniform in
    ``[0, mix]`` and for each channel weights of the other channels from a flat Dirichlet, so
    row ``c`` of the matrix is ``1 - s`` on the diagonal and ``s * w_cd`` elsewhere (rows sum
    to 1). Draws from ``rng`` only, and nothing when ``p <= 0`` or one channel.
    """
    if n_channels < 2 or p <= 0 or not rng.random() < p:
        return None
    lo, hi = float(factor_range[0]), float(factor_range[1])
    brightness = tuple(float(v) for v in rng.uniform(lo, hi, n_channels))
    contrast = tuple(float(v) for v in rng.uniform(lo, hi, n_channels))
    matrix = None
    if mix > 0:
        s = float(rng.uniform(0.0, mix))
        rows = []
        for c in range(n_channels):
            w = rng.dirichlet(np.ones(n_channels - 1))
            row = np.insert(s * w, c, 1.0 - s)
            rows.append(tuple(float(v) for v in row))
        matrix = tuple(rows)
    return ColorJitter(brightness, contrast, matrix)
