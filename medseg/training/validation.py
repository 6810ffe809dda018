"""Validation on whole preprocessed volumes: sliding-window logits, loss and per-class Dice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def dice_per_class(pred: np.ndarray, label: np.ndarray, n_classes: int) -> list[float]:
    """Dice of each foreground class (NaN when the class is absent from both)."""
    out = []
    for c in range(1, n_classes):
        p, t = pred == c, label == c
        denom = p.sum() + t.sum()
        out.append(float("nan") if denom == 0 else 2.0 * float(np.logical_and(p, t).sum()) / float(denom))
    return out


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
