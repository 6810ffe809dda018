"""Blob loss: a lesion-wise soft Dice term added to any loss (Kofler et al., "blob loss: instance
imbalance aware loss functions for semantic segmentation", IPMI 2023).

A plain soft Dice is dominated by large lesions: missing a 10-voxel lesion next to a 10,000-voxel
one barely changes it. The blob term scores every lesion on its own: the lesions are the connected
components of the reference foreground (``cc3d``, 26-connectivity in 3D, 8 in 2D); lesion ``i`` is
scored by the soft Dice of the foreground probability against it, computed over the voxels of
background ∪ lesion ``i`` only, so a prediction covering another lesion ``j`` is no false positive
for ``i``. The term is ``1 - mean`` of these Dice values over all lesions of the batch. (Kofler et
al. average over the lesions of each image, then over the images; pooling the lesions of the batch,
as here, weighs an image by its number of lesions.) The validation loss of a run includes the term
too, so it is not comparable with that of a run without it.

The lesions are found on the CPU from the integer labels (no gradient is needed there); with CUDA
this copies the labels to the host at every call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Smoothing of the per-lesion soft Dice (numerator and denominator).
SMOOTH = 1e-5


def _components(fg: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of one sample's foreground mask (1D masks are treated as 1 x N)."""
    from medseg.transforms.components import connected_components

    if not fg.any():
        return np.zeros(fg.shape, dtype=np.int64), 0
    comp, n = connected_components(fg if fg.ndim > 1 else fg[None])
    return comp.reshape(fg.shape).astype(np.int64), n


def blob_dice_term(prob: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """The blob term ``1 - mean_i Dice_i`` over the lesions of a batch.

    For lesion ``i`` with voxels ``L_i`` and background ``B`` (voxels of no lesion),
    ``Dice_i = (2 sum_{L_i} p + 1e-5) / (sum_{B ∪ L_i} p + |L_i| + 1e-5)``: other lesions are
    masked out of the prediction's sum.

    Args:
        prob: Foreground probability ``[B, *S]`` (float, differentiable), ``S`` 1 to 3 axes.
        foreground: Reference foreground ``[B, *S]`` (bool, any device).

    Returns:
        A scalar on ``prob``'s device; 0 (still attached to ``prob``'s graph) when the batch has
        no lesion.
    """
    ref = foreground.detach().cpu().numpy().astype(bool)
    dices = []
    for b in range(prob.shape[0]):
        comp, n = _components(ref[b])
        if n == 0:
            continue
        index = torch.from_numpy(comp.reshape(-1)).to(prob.device)
        p = prob[b].reshape(-1)
        # sums[k]: probability mass on lesion k (k = 0: background)
        sums = p.new_zeros(n + 1).index_add(0, index, p)
        sizes = torch.from_numpy(np.bincount(comp.reshape(-1), minlength=n + 1)[1:]).to(p)
        dices.append((2 * sums[1:] + SMOOTH) / (sums[0] + sums[1:] + sizes + SMOOTH))
    if not dices:
        return prob.sum() * 0.0
    return 1 - torch.cat(dices).mean()


class BlobDice(torch.nn.Module):
    """``base(logits, labels) + weight * blob term`` (see :func:`blob_dice_term`).

    Args:
        base_loss: ``base(logits [B, C, *S], labels [B, *S]) -> scalar``; it receives the labels
            unchanged.
        weight: Weight of the blob term (``>= 0``).
        regions: Whether the model has sigmoid region outputs: the foreground probability is then
            ``sigmoid`` of output channel 0 and the reference foreground is ``labels`` in
            ``region_labels``; otherwise (softmax outputs) ``1 - softmax(logits)[:, 0]`` and
            ``labels > 0``.
        region_labels: The label values of the first region (needed with ``regions``).

    Call with logits ``[B, C, *S]`` (any float dtype; the term is computed in float32) and
    integer labels ``[B, *S]`` or ``[B, 1, *S]``; returns a scalar.

    Raises:
        ValueError: a negative weight, or ``regions`` without ``region_labels``.
    """

    def __init__(
        self,
        base_loss: torch.nn.Module,
        weight: float,
        regions: bool = False,
        region_labels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"blob loss weight must be >= 0, got {weight}")
        if regions and not region_labels:
            raise ValueError("blob loss with regions needs region_labels (the first region's labels)")
        self.loss = base_loss
        self.weight = float(weight)
        self.regions = bool(regions)
        self.region_labels = [int(v) for v in region_labels or []]

    def foreground(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(foreground probability [B, *S] float32, reference foreground [B, *S] bool)."""
        if self.regions:
            prob = logits[:, 0].float().sigmoid()
            ref = torch.isin(labels, torch.tensor(self.region_labels, device=labels.device))
        else:
            prob = 1 - logits.float().softmax(1)[:, 0]
            ref = labels > 0
        return prob, ref

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        base = self.loss(logits, labels)
        lab = labels[:, 0] if labels.ndim == logits.ndim else labels
        prob, ref = self.foreground(logits, lab.long())
        return base + self.weight * blob_dice_term(prob, ref)
