"""Intensity augmentation on image patches (labels are never touched).

Each transform is a frozen dataclass holding its exact parameters (the
deterministic twin); :func:`random_intensity` draws them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class IntensityTransform:
    """Base class: ``__call__(image [C, *spatial]) -> image``."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class Gamma(IntensityTransform):
    """Gamma on the patch rescaled to [0, 1], then mapped back to its range (per channel)."""

    gamma: float

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(image)
        for c in range(image.shape[0]):
            x = image[c]
            lo, hi = x.min(), x.max()
            rng = (hi - lo).clamp_min(1e-7)
            out[c] = ((x - lo) / rng).pow(self.gamma) * rng + lo
        return out


@dataclass(frozen=True)
class Contrast(IntensityTransform):
    """Scale deviations from the channel mean by ``factor``, keeping the value range."""

    factor: float

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, image.ndim))
        mean = image.mean(dim=dims, keepdim=True)
        lo = image.amin(dim=dims, keepdim=True)
        hi = image.amax(dim=dims, keepdim=True)
        return torch.maximum(torch.minimum((image - mean) * self.factor + mean, hi), lo)


@dataclass(frozen=True)
class Brightness(IntensityTransform):
    """Multiply intensities by ``factor``."""

    factor: float

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.factor


@dataclass(frozen=True)
class GaussianNoise(IntensityTransform):
    """Add zero-mean Gaussian noise of ``std`` drawn from generator ``seed``."""

    std: float
    seed: int

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        return image + torch.randn(image.shape, generator=g, dtype=image.dtype) * self.std


@dataclass(frozen=True)
class GaussianBlur(IntensityTransform):
    """Separable Gaussian blur of ``sigma`` voxels."""

    sigma: float

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        nd = image.ndim - 1
        radius = max(1, int(round(3 * self.sigma)))
        x = torch.arange(-radius, radius + 1, dtype=image.dtype)
        k = torch.exp(-0.5 * (x / self.sigma) ** 2)
        k = k / k.sum()
        out = image[None]
        conv = torch.nn.functional.conv2d if nd == 2 else torch.nn.functional.conv3d
        c = image.shape[0]
        for ax in range(nd):
            shape = [1] * nd
            shape[ax] = k.numel()
            weight = k.reshape(1, 1, *shape).repeat(c, 1, *([1] * nd))
            pad = [0] * (2 * nd)
            pad[2 * (nd - 1 - ax)] = radius
            pad[2 * (nd - 1 - ax) + 1] = radius
            out = conv(torch.nn.functional.pad(out, pad, mode="replicate"), weight, groups=c)
        return out[0]


@dataclass(frozen=True)
class ChannelDropout(IntensityTransform):
    """Set the input channels ``channels`` (indices into ``[C, *spatial]``) to 0; others untouched.

    After ``zscore`` or ``ct`` normalisation 0 is a channel's mean (after ``percentile`` or
    ``window`` it is the bottom of the range, and training warns about it), which is also what
    ``medseg predict --missing-channel zeros`` feeds for an absent sequence
    (:mod:`medseg.inference.channels`), so a model trained with this sees at training time what
    it gets at prediction when a sequence is missing. This is modality dropout as in HeMIS
    (Havaei et al., "HeMIS: Hetero-Modal Image Segmentation", MICCAI 2016) and
    Dorent et al., "Hetero-Modal Variational Encoder-Decoder for Joint Modality Completion and
    Segmentation", MICCAI 2019.

    Raises:
        IndexError: a channel index outside ``0..C-1``.
    """

    channels: tuple[int, ...]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        out = image.clone()
        n = image.shape[0]
        for c in self.channels:
            if not 0 <= c < n:
                raise IndexError(f"channel {c} out of range for an image with {n} channel(s)")
            out[c] = 0
        return out

    def to_dict(self) -> dict:
        return {"name": type(self).__name__, "channels": list(self.channels)}


@dataclass(frozen=True)
class ChannelSubstitution(IntensityTransform):
    """Replace the input channels ``replaced`` by copies of channel ``source`` (indices into
    ``[C, *spatial]``): what a dataset does when it fills a missing sequence with another one.

    Some exports stand in for an absent sequence with a copy of one that was acquired (the TCGA
    LGG export of Buda et al., Comput. Biol. Med. 2019, copies FLAIR into missing pre- and
    post-contrast channels). A network that never saw such a copy reads it as an unknown
    contrast; training with it is modality dropout (Havaei et al., "HeMIS", MICCAI 2016) in the
    form the data actually takes. Applied after normalisation, so a copy equals the source's
    normalised values, exactly as a substituted case is normalised.

    Raises:
        IndexError: a channel index outside ``0..C-1``.
    """

    source: int
    replaced: tuple[int, ...]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        for c in (self.source, *self.replaced):
            if not 0 <= c < n:
                raise IndexError(f"channel {c} out of range for an image with {n} channel(s)")
        out = image.clone()
        for c in self.replaced:
            out[c] = image[self.source]
        return out

    def to_dict(self) -> dict:
        return {"name": type(self).__name__, "source": self.source, "replaced": list(self.replaced)}


def random_channel_substitution(
    rng: np.random.Generator, p: float, patterns: list[tuple[int, tuple[int, ...]]]
) -> ChannelSubstitution | None:
    """Draw the channel substitution of one patch, or None.

    With probability ``p`` (and at least one pattern), one ``(source, replaced)`` pattern is drawn
    uniformly. Draws from ``rng`` only when there is a pattern and ``p > 0``.
    """
    if not patterns or p <= 0 or not rng.random() < p:
        return None
    source, replaced = patterns[int(rng.integers(len(patterns)))]
    return ChannelSubstitution(int(source), tuple(int(c) for c in replaced))


def random_channel_dropout(
    rng: np.random.Generator, n_channels: int, p: float, max_dropped: int | None = None
) -> ChannelDropout | None:
    """Draw the channel dropout of one patch, or None (no dropout).

    With probability ``p`` (and at least 2 channels), draw k uniformly in ``1..max`` with ``max`` =
    ``min(max_dropped, n_channels - 1)`` (``max_dropped`` None: ``n_channels - 1``), then k distinct
    channels uniformly. At least one channel is always kept. Draws from ``rng`` only.
    """
    if n_channels < 2 or p <= 0 or not rng.random() < p:
        return None
    most = n_channels - 1 if max_dropped is None else max(1, min(int(max_dropped), n_channels - 1))
    k = int(rng.integers(1, most + 1))
    picked = rng.choice(n_channels, size=k, replace=False)
    return ChannelDropout(tuple(sorted(int(c) for c in picked)))


def random_intensity(
    rng: np.random.Generator,
    *,
    gamma_p: float,
    gamma_range: tuple[float, float],
    contrast_p: float,
    contrast_range: tuple[float, float],
    brightness_p: float,
    brightness_range: tuple[float, float],
    noise_p: float,
    noise_std: float,
    blur_p: float,
    blur_sigma: tuple[float, float],
) -> list[IntensityTransform]:
    """Draw the intensity transforms of one patch, in the order they are applied."""
    out: list[IntensityTransform] = []
    if rng.random() < noise_p and noise_std > 0:
        out.append(GaussianNoise(float(rng.uniform(0, noise_std)), int(rng.integers(2**31))))
    if rng.random() < blur_p:
        out.append(GaussianBlur(float(rng.uniform(*blur_sigma))))
    if rng.random() < brightness_p:
        out.append(Brightness(float(rng.uniform(*brightness_range))))
    if rng.random() < contrast_p:
        out.append(Contrast(float(rng.uniform(*contrast_range))))
    if rng.random() < gamma_p:
        out.append(Gamma(float(rng.uniform(*gamma_range))))
    return out
