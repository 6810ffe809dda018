"""CutMix on a training batch: a box of every patch is replaced by the same box of another patch.

Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", ICCV 2019; for segmentation as in French et al., "Semi-supervised semantic
segmentation needs strong, varied perturbations", BMVC 2020: the image AND the label are cut
from the same box, so labels stay hard (one class per voxel) and the loss is unchanged.

As the other augmentations, the random draw (:func:`random_cutmix`) hands its parameters to a
deterministic twin (:class:`CutMix`: an explicit box and partner mapping). The generator of a
batch is seeded with ``(seed, epoch, rank, batch index)`` (:class:`BatchCutMix`), apart from the
per-patch streams, so runs stay repeatable and a resumed run mixes the same batches; with
``p = 0`` nothing is drawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

#: Extra seed word separating the CutMix stream from the per-patch streams.
_STREAM = 0x63757478


@dataclass(frozen=True)
class CutMix:
    """Paste box ``start[d] <= x_d < stop[d]`` of patch ``partner[i]`` into patch ``i``.

    Attributes:
        start: First voxel of the box per spatial axis.
        stop: One past the last voxel of the box per spatial axis.
        partner: For each patch ``i`` of the batch, the patch its box comes from.
    """

    start: tuple[int, ...]
    stop: tuple[int, ...]
    partner: tuple[int, ...]

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch: image ``[B, C, *spatial]``, label ``[B, *spatial]`` -> new tensors.

        Raises:
            ValueError: a partner mapping of another length than ``B``, or a box of other
                dimensionality than the patches.
        """
        b, nd = image.shape[0], image.ndim - 2
        if len(self.partner) != b or label.shape[0] != b:
            raise ValueError(f"CutMix has {len(self.partner)} partners for a batch of {b}")
        if len(self.start) != nd or len(self.stop) != nd:
            raise ValueError(f"CutMix box has {len(self.start)} axes, the patches {nd}")
        box = tuple(slice(a, z) for a, z in zip(self.start, self.stop))
        idx = torch.as_tensor(self.partner, dtype=torch.long)
        image, label = image.clone(), label.clone()
        image[(slice(None), slice(None), *box)] = image[(idx, slice(None), *box)]
        label[(slice(None), *box)] = label[(idx, *box)]
        return image, label

    @property
    def volume(self) -> int:
        """Voxels in the box."""
        return int(np.prod([z - a for a, z in zip(self.start, self.stop)]))

    def to_dict(self) -> dict:
        return {
            "name": "CutMix",
            "start": list(self.start),
            "stop": list(self.stop),
            "partner": list(self.partner),
        }


def random_cutmix(
    rng: np.random.Generator, batch_size: int, spatial: tuple[int, ...], p: float, alpha: float = 1.0
) -> CutMix | None:
    """Draw the CutMix of one batch, or None (no mixing).

    With probability ``p`` (and at least 2 patches): the box's share of the patch ``r`` is drawn
    from Beta(``alpha``, ``alpha``) (Yun et al.), its side on axis ``d`` is
    ``round(spatial[d] * r ** (1 / nd))`` and it lies wholly inside the patch at a uniformly
    drawn position (French et al.'s ``within_bounds``), so its volume is ``r`` of the patch up to
    rounding. Partners form one random cycle over the batch: no patch is its own partner and
    every patch lends its box once. Draws from ``rng`` only, and nothing when ``p <= 0``.

    Args:
        rng: The batch's generator.
        batch_size: Patches in the batch ``B``.
        spatial: Patch size per spatial axis (voxels).
        p: Probability of mixing this batch.
        alpha: Beta parameter of the box share (1: uniform).
    """
    if p <= 0 or batch_size < 2 or not rng.random() < p:
        return None
    nd = len(spatial)
    share = float(rng.beta(alpha, alpha))
    sides = [int(min(s, max(0, round(s * share ** (1.0 / nd))))) for s in spatial]
    start = tuple(int(rng.integers(0, s - w + 1)) for s, w in zip(spatial, sides))
    stop = tuple(a + w for a, w in zip(start, sides))
    order = rng.permutation(batch_size)
    partner = [0] * batch_size
    for k in range(batch_size):  # each patch takes its box from the next one in a random cycle
        partner[int(order[k])] = int(order[(k + 1) % batch_size])
    return CutMix(start, stop, tuple(partner))


class BatchCutMix:
    """CutMix for the trainer's batches, or a no-op (``cutmix_p`` 0 or augmentation off).

    Args:
        config: An :class:`~medseg.config.AugmentationConfig` (or None).
        seed: ``training.seed``.
        rank: The process's rank (0 without torchrun).
    """

    def __init__(self, config: Any | None, seed: int, rank: int = 0) -> None:
        on = config is not None and bool(config.enabled)
        self.p = float(config.cutmix_p) if on else 0.0
        self.alpha = float(config.cutmix_alpha) if config is not None else 1.0
        self.seed, self.rank = int(seed), int(rank)
        if self.p > 0:
            log.info(
                "CutMix: probability %g per batch, box share ~ Beta(%g, %g)", self.p, self.alpha, self.alpha
            )
        elif config is not None and not config.enabled and config.cutmix_p > 0:
            log.warning("augmentation.cutmix_p is set but augmentation.enabled is false: no CutMix")

    def rng_for(self, epoch: int, index: int) -> np.random.Generator:
        """The generator of batch ``index`` of ``epoch`` on this rank."""
        return np.random.default_rng([self.seed, int(epoch), self.rank, int(index), _STREAM])

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, epoch: int, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``index`` of ``epoch``: image ``[B, C, *spatial]``, label ``[B, *spatial]``, mixed or not."""
        if self.p <= 0 or image.shape[0] < 2:
            return image, label
        mix = random_cutmix(
            self.rng_for(epoch, index), image.shape[0], tuple(image.shape[2:]), self.p, self.alpha
        )
        return (image, label) if mix is None else mix(image, label)
