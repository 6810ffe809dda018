"""Validation on whole preprocessed volumes: sliding-window logits, loss and per-class Dice
(per-region Dice of thresholded sigmoid outputs for region-based training)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from medseg.config.schema import RegionConfig
from medseg.data.regions import regions_to_targets


def dice_per_class(pred: np.ndarray, label: np.ndarray, n_classes: int) -> list[float]:
    """Dice of each foreground class (NaN when the class is absent from both)."""
    return [_dice(pred == c, label == c) for c in range(1, n_classes)]


def score_names(labels: Mapping[int, str], regions: Sequence[RegionConfig] | None) -> list[str]:
    """Names of the validation Dice columns: the foreground classes, or the regions, in order."""
    if regions:
        return [r.name for r in regions]
    return [labels[c] for c in sorted(labels) if c > 0]


def case_dice(
    logits: torch.Tensor,
    label: torch.Tensor,
    labels: Mapping[int, str],
    regions: Sequence[RegionConfig] | None = None,
) -> list[float]:
    """Dice of one validation case, in the order of :func:`score_names` (NaN where both are empty).

    Args:
        logits: Network output ``[K, *S]``: softmax classes, or one sigmoid output per region.
        label: Integer label map ``[*S]``.
        labels: The dataset's classes (value -> name), background included.
        regions: For region-based training: region ``r`` is predicted where ``sigmoid(logits[r]) > 0.5``
            and compared with the union of its label values.
    """
    if regions:
        predicted = (logits > 0).numpy()  # sigmoid(x) > 0.5 exactly where x > 0
        truth = regions_to_targets(label.numpy(), regions) > 0.5
        return [_dice(p, t) for p, t in zip(predicted, truth)]
    per_class = dice_per_class(logits.argmax(0).numpy(), label.numpy(), max(labels) + 1)
    return [per_class[c - 1] for c in sorted(labels) if c > 0]


def _dice(p: np.ndarray, t: np.ndarray) -> float:
    denom = int(p.sum()) + int(t.sum())
    return float("nan") if denom == 0 else 2.0 * float(np.logical_and(p, t).sum()) / float(denom)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch_size: Sequence[int],
    overlap: float,
    device: torch.device,
    batch_size: int = 2,
    slice_axis: int | None = None,
) -> torch.Tensor:
    """Logits ``[C, *spatial]`` of one case ``[C_in, *spatial]`` (3D, or slice by slice for 2D models)."""
    from medseg.inference.sliding_window import sliding_window_inference

    if slice_axis is not None:  # 2D model over a 3D case
        moved = image.movedim(slice_axis + 1, 1)  # [C, S, a, b]
        slices = []
        for s in range(moved.shape[1]):
            x = moved[:, s][None].to(device)
            slices.append(
                sliding_window_inference(x, model, patch_size, overlap=overlap, batch_size=batch_size)[
                    0
                ].cpu()
            )
        return torch.stack(slices, dim=1).movedim(1, slice_axis + 1)
    x = image[None].to(device)
    return sliding_window_inference(x, model, patch_size, overlap=overlap, batch_size=batch_size)[0].cpu()
