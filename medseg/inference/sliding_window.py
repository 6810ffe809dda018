"""Sliding-window inference with Gaussian blending, batched windows and bounded memory.

Windows are placed exactly as MONAI's ``sliding_window_inference`` places them
(step ``int(roi * (1 - overlap))``, the last window flush with the border) and
blended with MONAI's importance map, so both give the same probabilities for
the same network and settings. Two outputs:

* :func:`sliding_window_inference`: the blended network output for every voxel
  (``[B, C, *spatial]``);
* :func:`sliding_window_labels`: the arg-max label map only, computed slab by
  slab along the last axis so that no full-size float volume per class is ever
  held: memory grows with one slab of windows, not with the scan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum

import torch
import torch.nn.functional as F

from medseg.progress import track

Network = Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]]


class BlendMode(str, Enum):
    """How overlapping window outputs are weighted."""

    GAUSSIAN = "gaussian"
    CONSTANT = "constant"


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start index of each window along one axis (``size >= roi``)."""
    if roi >= size:
        return [0]
    step = max(int(roi * (1.0 - overlap)), 1)
    n = math.ceil((size - roi) / step) + 1
    return [min(i * step, size - roi) for i in range(n)]


def _validate(roi_size: Sequence[int], nd: int, overlap: float, batch_size: int) -> list[int]:
    roi = [int(r) for r in roi_size]
    if len(roi) != nd:
        raise ValueError(f"roi_size has {len(roi)} sizes for {nd} spatial dimensions")
    if any(r < 1 for r in roi):
        raise ValueError(f"roi_size must be positive, got {roi}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return roi


def _importance(
    roi: Sequence[int], mode: BlendMode | str, sigma_scale: float, device: torch.device
) -> torch.Tensor:
    from monai.data.utils import compute_importance_map

    return compute_importance_map(
        tuple(roi), mode=BlendMode(mode).value, sigma_scale=sigma_scale, device=device, dtype=torch.float32
    )


def _pad(inputs: torch.Tensor, roi: Sequence[int], cval: float) -> tuple[torch.Tensor, list[slice]]:
    """Pad (split evenly, extra voxel at the end) so every axis is at least ``roi``."""
    spatial = inputs.shape[2:]
    pads: list[int] = []
    crop = []
    for k in range(len(spatial) - 1, -1, -1):
        diff = max(roi[k] - spatial[k], 0)
        pads.extend([diff // 2, diff - diff // 2])
    for k in range(len(spatial)):
        diff = max(roi[k] - spatial[k], 0)
        crop.append(slice(diff // 2, diff // 2 + spatial[k]))
    if any(pads):
        inputs = F.pad(inputs, pads, mode="constant", value=cval)
    return inputs, crop


def _run(network: Network, batch: torch.Tensor) -> torch.Tensor:
    out = network(batch)
    if isinstance(out, list | tuple):
        out = out[0]
    return out


def _windows(shape: Sequence[int], roi: Sequence[int], overlap: float) -> list[tuple[int, ...]]:
    starts = [window_starts(s, r, overlap) for s, r in zip(shape, roi)]
    grid = (
        torch.cartesian_prod(*[torch.tensor(s) for s in starts])
        if len(starts) > 1
        else torch.tensor(starts[0])[:, None]
    )
    return [tuple(int(v) for v in row) for row in grid.reshape(-1, len(shape))]


@torch.inference_mode()
def sliding_window_inference(
    inputs: torch.Tensor,
    network: Network,
    roi_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 4,
    mode: BlendMode | str = BlendMode.GAUSSIAN,
    sigma_scale: float = 0.125,
    cval: float = 0.0,
    stitch_device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Blend the network's output over overlapping windows.

    Args:
        inputs: ``[B, C, *spatial]`` (2D or 3D).
        network: Maps ``[N, C, *roi]`` to ``[N, C_out, *roi]`` (a list: its first item is used).
        roi_size: Window size per spatial axis.
        overlap: Share of a window overlapping its neighbour, in [0, 1).
        batch_size: Windows per forward pass.
        mode: ``gaussian`` (importance weighting) or ``constant``.
        sigma_scale: Gaussian sigma as a share of the window size.
        cval: Padding value when the input is smaller than a window.
        stitch_device: Where the output is accumulated (default: the input's device). On
            CUDA, if the accumulator does not fit, it falls back to the CPU.
        progress: Draw a progress bar over window batches.

    Returns:
        ``[B, C_out, *spatial]`` blended output on ``stitch_device``.
    """
    nd = inputs.ndim - 2
    roi = _validate(roi_size, nd, overlap, batch_size)
    padded, crop = _pad(inputs, roi, cval)
    shape = padded.shape[2:]
    device = torch.device(stitch_device) if stitch_device is not None else inputs.device
    weight = _importance(roi, mode, sigma_scale, padded.device)
    windows = _windows(shape, roi, overlap)
    outputs = []
    for b in range(padded.shape[0]):
        out = None
        count = None
        batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
        buffer = padded.new_empty((batch_size, padded.shape[1], *roi))
        for group in track(batches, "sliding window", min_items=2) if progress else batches:
            for i, w in enumerate(group):  # fill a preallocated batch (no per-batch allocation)
                buffer[i] = padded[b][(slice(None), *[slice(s, s + r) for s, r in zip(w, roi)])]
            pred = _run(network, buffer[: len(group)]).float()
            pred *= weight
            if out is None:
                out, device = _alloc((pred.shape[1], *shape), device)
                count = torch.zeros(tuple(shape), dtype=torch.float32, device=device)
            pred = pred.to(device)
            w_dev = weight.to(device)
            for w, p in zip(group, pred):
                sl = tuple(slice(s, s + r) for s, r in zip(w, roi))
                out[(slice(None), *sl)] += p
                count[sl] += w_dev
        out /= count
        outputs.append(out[(slice(None), *crop)])
    return torch.stack(outputs)


def _alloc(shape: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.device]:
    try:
        return torch.zeros(tuple(shape), dtype=torch.float32, device=device), device
    except torch.OutOfMemoryError:
        cpu = torch.device("cpu")
        return torch.zeros(tuple(shape), dtype=torch.float32, device=cpu), cpu


@torch.inference_mode()
def sliding_window_labels(
    inputs: torch.Tensor,
    network: Network,
    roi_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 4,
    mode: BlendMode | str = BlendMode.GAUSSIAN,
    sigma_scale: float = 0.125,
    cval: float = 0.0,
    progress: bool = False,
    label_dtype: torch.dtype = torch.uint8,
) -> torch.Tensor:
    """Arg-max labels ``[*spatial]`` of one image ``[1, C, *spatial]`` with bounded memory.

    Windows are processed row by row along the last axis; as soon as no remaining window
    can touch a slab of the volume, that slab is normalised, reduced to labels and its
    float accumulator freed. Peak memory is about ``C_out x (other axes) x (roi + step)``
    floats instead of ``C_out x`` the whole volume. Results equal ``argmax`` of
    :func:`sliding_window_inference` with the same settings.
    """
    if inputs.shape[0] != 1:
        raise ValueError("sliding_window_labels takes one image at a time ([1, C, *spatial])")
    nd = inputs.ndim - 2
    roi = _validate(roi_size, nd, overlap, batch_size)
    padded, crop = _pad(inputs, roi, cval)
    shape = padded.shape[2:]
    weight = _importance(roi, mode, sigma_scale, padded.device)
    windows = _windows(shape, roi, overlap)
    last_starts = sorted({w[-1] for w in windows})
    labels = torch.zeros(tuple(shape), dtype=label_dtype)
    acc: torch.Tensor | None = None
    count: torch.Tensor | None = None
    base = 0  # index along the last axis of acc[..., 0]
    rows = [(k0, [w for w in windows if w[-1] == k0]) for k0 in last_starts]
    for r, (k0, row) in enumerate(track(rows, "sliding window", min_items=2) if progress else rows):
        for i in range(0, len(row), batch_size):
            group = row[i : i + batch_size]
            x = torch.stack(
                [padded[0][(slice(None), *[slice(s, s + q) for s, q in zip(w, roi)])] for w in group]
            )
            pred = (_run(network, x).float() * weight).cpu()
            if acc is None:
                span = min(
                    shape[-1], roi[-1] + (last_starts[1] - last_starts[0] if len(last_starts) > 1 else 0)
                )
                acc = torch.zeros((pred.shape[1], *shape[:-1], span), dtype=torch.float32)
                count = torch.zeros((*shape[:-1], span), dtype=torch.float32)
            needed = k0 + roi[-1] - base
            if needed > acc.shape[-1]:  # grow (uneven steps at the border)
                extra = needed - acc.shape[-1]
                acc = torch.cat([acc, acc.new_zeros((*acc.shape[:-1], extra))], dim=-1)
                count = torch.cat([count, count.new_zeros((*count.shape[:-1], extra))], dim=-1)
            w_cpu = weight.cpu()
            for w, p in zip(group, pred):
                sl = tuple(slice(s, s + q) for s, q in zip(w[:-1], roi[:-1]))
                kk = slice(w[-1] - base, w[-1] - base + roi[-1])
                acc[(slice(None), *sl, kk)] += p
                count[(*sl, kk)] += w_cpu
        done_until = last_starts[r + 1] if r + 1 < len(last_starts) else shape[-1]
        n_done = done_until - base
        if n_done > 0:
            labels[..., base:done_until] = torch.argmax(acc[..., :n_done] / count[..., :n_done], dim=0).to(
                label_dtype
            )
            acc = torch.cat([acc[..., n_done:], acc.new_zeros((*acc.shape[:-1], n_done))], dim=-1)
            count = torch.cat([count[..., n_done:], count.new_zeros((*count.shape[:-1], n_done))], dim=-1)
            base = done_until
    return labels[tuple(crop)]


class SlidingWindowInferer:
    """Class form of :func:`sliding_window_inference` (settings bound once, MONAI style)."""

    def __init__(
        self,
        roi_size: Sequence[int],
        overlap: float = 0.5,
        batch_size: int = 4,
        mode: BlendMode | str = BlendMode.GAUSSIAN,
        sigma_scale: float = 0.125,
        cval: float = 0.0,
    ) -> None:
        _validate(roi_size, len(roi_size), overlap, batch_size)
        BlendMode(mode)
        self.roi_size = list(roi_size)
        self.overlap = overlap
        self.batch_size = batch_size
        self.mode = mode
        self.sigma_scale = sigma_scale
        self.cval = cval

    def _settings(self) -> dict:
        return {
            "roi_size": self.roi_size,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "mode": self.mode,
            "sigma_scale": self.sigma_scale,
            "cval": self.cval,
        }

    def __call__(self, inputs: torch.Tensor, network: Network) -> torch.Tensor:
        return sliding_window_inference(inputs, network, **self._settings())

    def labels(self, inputs: torch.Tensor, network: Network) -> torch.Tensor:
        """Arg-max labels with bounded memory (see :func:`sliding_window_labels`)."""
        return sliding_window_labels(inputs, network, **self._settings())
