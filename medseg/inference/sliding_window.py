"""Sliding-window inference with Gaussian blending, batched windows and bounded memory.

Windows are placed exactly as MONAI's ``sliding_window_inference`` places them
(step ``int(roi * (1 - overlap))``, the last window flush with the border) and
blended with MONAI's importance map, so both give the same probabilities for
the same network and settings. Two outputs:

* :func:`sliding_window_inference`: the blended network output for every voxel
  (``[B, C, *spatial]``);
* :func:`sliding_window_labels`: the label map only, computed slab by slab along
  the last axis so that no full-size float volume per class is ever held: memory
  grows with one slab of windows, not with the scan. The per-slab decision is
  pluggable: the arg-max (:func:`argmax_decision`, softmax models) by default, or
  each region thresholded and painted in order (:func:`region_decision`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from medseg.progress import track

if TYPE_CHECKING:
    from medseg.config.schema import RegionConfig

Network = Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]]

#: Labels ``[*other, n]`` (integers) of one slab of accumulated scores ``[K, *other, n]``. The
#: scores are Gaussian-weighted SUMS of the network's outputs, not averages (the weight sum is
#: not kept), so a decision must not change when a voxel's K scores are all scaled by the same
#: positive number: an arg-max over K, or a sign test, qualifies.
SlabDecision = Callable[[torch.Tensor], torch.Tensor]


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


@functools.lru_cache(maxsize=16)
def _importance_cpu(roi: tuple[int, ...], mode: str, sigma_scale: float) -> torch.Tensor:
    if BlendMode(mode) is BlendMode.CONSTANT:
        return torch.ones(roi, dtype=torch.float32)
    weight: torch.Tensor | None = None
    for i, size in enumerate(roi):
        x = torch.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float32)
        x = torch.exp(x**2 / (-2 * (size * sigma_scale) ** 2))
        weight = x if weight is None else weight.unsqueeze(-1) * x[(None,) * i]
    assert weight is not None
    return weight.clamp_(min=max(float(weight.min()), 1e-3))


def importance_map(
    roi: Sequence[int],
    mode: BlendMode | str = BlendMode.GAUSSIAN,
    sigma_scale: float = 0.125,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The blending weight of one window ``[*roi]`` (float32), cached per window shape.

    Gaussian mode: a separable Gaussian with sigma ``sigma_scale * roi`` per axis, centred on
    the window, clamped below at its minimum or 1e-3 (MONAI's ``compute_importance_map``, the
    nnU-Net weighting; equal to it, checked by the tests). Constant mode: ones.
    """
    w = _importance_cpu(tuple(int(r) for r in roi), BlendMode(mode).value, float(sigma_scale))
    return w.to(device)


_importance = importance_map


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


def accumulation_device(
    nbytes: int, compute: torch.device, requested: torch.device | str | None = None
) -> torch.device:
    """Where an accumulation buffer of ``nbytes`` goes: ``requested`` if given; on CUDA, the GPU
    when the buffer takes at most half of its free memory (``torch.cuda.mem_get_info`` plus what
    PyTorch's cache holds unused), else the CPU; otherwise the compute device."""
    if requested is not None:
        return torch.device(requested)
    if compute.type == "cuda":
        free, _ = torch.cuda.mem_get_info(compute)
        # memory PyTorch holds in its cache but has not handed out is free for this buffer too
        free += torch.cuda.memory_reserved(compute) - torch.cuda.memory_allocated(compute)
        return compute if nbytes <= free // 2 else torch.device("cpu")
    return compute


def _batches(windows: list[tuple[int, ...]], batch_size: int) -> list[list[tuple[int, ...]]]:
    return [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]


def _crops(image: torch.Tensor, group: Sequence[tuple[int, ...]], roi: Sequence[int]) -> torch.Tensor:
    """The windows ``group`` of ``image`` ``[C, *spatial]`` as one batch ``[n, C, *roi]``."""
    return torch.stack([image[(slice(None), *[slice(s, s + r) for s, r in zip(w, roi)])] for w in group])


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
        stitch_device: Where the output is accumulated. Default: the input's device, except on
            CUDA when the buffer would take more than half the free GPU memory (then the CPU).
        progress: Draw a progress bar over window batches.

    Returns:
        ``[B, C_out, *spatial]`` blended output (float32) on the accumulation device.

    Raises:
        ValueError: a bad ``roi_size``, ``overlap`` or ``batch_size``.
    """
    nd = inputs.ndim - 2
    roi = _validate(roi_size, nd, overlap, batch_size)
    padded, crop = _pad(inputs, roi, cval)
    shape = padded.shape[2:]
    weight = _importance(roi, mode, sigma_scale, padded.device)
    batches = _batches(_windows(shape, roi, overlap), batch_size)
    outputs = []
    for b in range(padded.shape[0]):
        out: torch.Tensor | None = None
        count = torch.zeros(tuple(shape), dtype=torch.float32)
        for group in track(batches, "sliding window", min_items=2) if progress else batches:
            pred = _run(network, _crops(padded[b], group, roi)).float()
            if out is None:
                nbytes = 4 * (pred.shape[1] + 1) * math.prod(shape)
                device = accumulation_device(nbytes, pred.device, stitch_device)
                out = torch.zeros((pred.shape[1], *shape), dtype=torch.float32, device=device)
                count = count.to(device)
                w_acc = weight.to(device)
            pred = pred.to(out.device).mul_(w_acc)
            for w, p in zip(group, pred):
                sl = tuple(slice(s, s + r) for s, r in zip(w, roi))
                out[(slice(None), *sl)] += p
                count[sl] += w_acc
        assert out is not None
        out /= count
        outputs.append(out[(slice(None), *crop)])
    return torch.stack(outputs)


def argmax_decision(scores: torch.Tensor) -> torch.Tensor:
    """The class of the largest score per voxel, ``[K, *other, n]`` -> int64 ``[*other, n]``
    (the first one on ties, like ``argmax``): the softmax models' decision."""
    # max(0).indices: the first maximum, like argmax, but ~8x faster on a CPU here
    return scores.max(0).indices


def region_decision(regions: Sequence[RegionConfig], label_dtype: torch.dtype = torch.uint8) -> SlabDecision:
    """The region models' decision: region ``r`` is set where its sigmoid exceeds 0.5, and the
    masks are painted in the order of ``regions`` (:func:`medseg.data.regions.paint`), exactly as
    on the full averaged logits. Scores ``[R, *other, n]`` -> ``label_dtype`` ``[*other, n]``.

    Raises:
        ValueError (when called): a number of score channels other than ``len(regions)``.
    """
    from medseg.data.regions import paint  # pydantic and numpy only where regions are used

    regions = list(regions)

    def decide(scores: torch.Tensor) -> torch.Tensor:
        # sigmoid(avg) > 0.5 <=> avg > 0, with avg = sum / W, sum = sum_i w_i * z_i over the
        # windows covering the voxel, W = sum_i w_i. Every weight is > 0 (the Gaussian map is
        # clamped to >= its minimum, >= 1e-3; constant mode is 1) and every voxel lies in at
        # least one window, so W > 0 and sign(avg) == sign(sum): "sum > 0" is the same test and
        # W need not be accumulated. (IEEE division by a positive W keeps the sign; only a
        # subnormal sum could round to 0 when divided, which no real logit sum reaches.) The ring
        # adds a voxel's windows in another order than sliding_window_inference, so a logit within
        # float rounding of 0 may fall either way, as a near-tie may for the arg-max.
        return paint(scores > 0, regions, dtype=label_dtype)

    return decide


def _ring(start: int, length: int, span: int) -> list[tuple[slice, slice]]:
    """``[start, start + length)`` on a ring of ``span`` as ``(ring slice, source slice)`` pieces."""
    a = start % span
    first = min(length, span - a)
    pieces = [(slice(a, a + first), slice(0, first))]
    if first < length:
        pieces.append((slice(0, length - first), slice(first, length)))
    return pieces


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
    stitch_device: torch.device | str | None = None,
    decide: SlabDecision = argmax_decision,
) -> torch.Tensor:
    """Labels ``[*spatial]`` (``label_dtype``, on the CPU) of one image ``[1, C, *spatial]``
    with bounded memory.

    Windows are processed row by row along the last axis and blended into a ring buffer one
    window deep along that axis (``C_out x (other axes) x roi[-1]`` float32, accumulated in
    place). As soon as no remaining window can touch a slab, ``decide`` turns it into labels
    and its part of the ring is zeroed for reuse: memory grows with one slab, never with the
    scan or with one float volume per class. The weights' sum is not accumulated: ``decide``
    gets weighted sums, and must give the same labels for any positive per-voxel scaling of
    them (see :data:`SlabDecision`). The ring lives on the GPU when the network does and it
    fits in half of the free memory, so ``decide`` runs there too. Results equal ``decide``
    applied to :func:`sliding_window_inference` with the same settings (by default the arg-max;
    :func:`region_decision` for region models).

    Raises:
        ValueError: more than one image, or bad window settings.
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
    span = roi[-1]
    ring: torch.Tensor | None = None
    rows = [(k0, [w for w in windows if w[-1] == k0]) for k0 in last_starts]
    for r, (k0, row) in enumerate(track(rows, "sliding window", min_items=2) if progress else rows):
        for group in _batches(row, batch_size):
            pred = _run(network, _crops(padded[0], group, roi)).float()
            if ring is None:
                nbytes = 4 * pred.shape[1] * math.prod(shape[:-1]) * span
                device = accumulation_device(nbytes, pred.device, stitch_device)
                ring = torch.zeros((pred.shape[1], *shape[:-1], span), dtype=torch.float32, device=device)
                w_acc = weight.to(device)
            pred = pred.to(ring.device).mul_(w_acc)
            for w, p in zip(group, pred):
                sl = tuple(slice(s, s + q) for s, q in zip(w[:-1], roi[:-1]))
                for dst, src in _ring(w[-1], roi[-1], span):
                    ring[(slice(None), *sl, dst)] += p[..., src]
        assert ring is not None
        done_until = last_starts[r + 1] if r + 1 < len(last_starts) else shape[-1]
        for dst, src in _ring(k0, done_until - k0, span):
            part = ring[..., dst]
            labels[..., k0 + src.start : k0 + src.stop] = decide(part).to(label_dtype).cpu()
            part.zero_()
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

    def labels(
        self, inputs: torch.Tensor, network: Network, decide: SlabDecision = argmax_decision
    ) -> torch.Tensor:
        """Labels (arg-max by default) with bounded memory (see :func:`sliding_window_labels`)."""
        return sliding_window_labels(inputs, network, **self._settings(), decide=decide)
