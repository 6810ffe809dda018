"""Edge-aligned resampling between a grid and a finer or coarser version of it.

A grid of ``n`` voxels is resampled to ``m`` voxels covering the same extent:
new voxel ``i'`` sits at old voxel coordinate ``(i' + 0.5) * n / m - 0.5``.
The mapping is exact and its inverse is the same formula with ``n`` and ``m``
swapped, so a mask predicted on the resampled grid goes back onto the source
grid voxel for voxel (no half-voxel shifts).

Two implementations: ``scipy.ndimage.affine_transform`` on the CPU (the reference), and a
separable torch one for orders 0 and 1 that runs on any torch device (the GPU at prediction)
and reproduces scipy's: the same float64 source coordinates, the same rounding, the same edges.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# dtypes torch cannot gather: moved as the signed integer of the same size (a gather only copies bits)
_SIGNED_VIEW = {np.dtype(np.uint16): np.int16, np.dtype(np.uint32): np.int32, np.dtype(np.uint64): np.int64}


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float | None]
) -> tuple[int, ...]:
    """Shape that gives voxels of about ``target`` mm (None keeps an axis)."""
    out = []
    for n, s, t in zip(shape, spacing, target):
        out.append(int(n) if t is None else max(1, int(round(n * s / t))))
    return tuple(out)


def index_map(n_from: int, n_to: int) -> tuple[float, float]:
    """(scale, offset) so that coordinate_in_from = scale * index_in_to + offset."""
    scale = n_from / n_to
    return scale, 0.5 * scale - 0.5


def resample_array(
    array: np.ndarray, shape: Sequence[int], order: int, device: torch.device | str | None = None
) -> np.ndarray:
    """Resample the first ``len(shape)`` axes of ``array`` to ``shape`` (edge-aligned).

    Args:
        array: ``[*spatial, *extra]``; extra trailing axes (channels) are resampled independently.
        shape: The new spatial shape (voxels), one entry per leading axis of ``array``.
        order: 0 nearest neighbour (labels), 1 linear (images, probabilities), 3 cubic spline.
            Edges repeat the border voxel (scipy's mode ``"nearest"``).
        device: ``None`` for scipy on the CPU; a torch device for the torch implementation on
            that device (orders 0 and 1: order 0 is bit-identical to scipy, order 1 agrees to
            float32 rounding; other orders fall back to scipy).

    Returns:
        ``[*shape, *extra]`` numpy array: ``array`` itself when the shape does not change, else
        ``array``'s dtype for order 0 and float32 otherwise.
    """
    nd = len(shape)
    if tuple(array.shape[:nd]) == tuple(shape):
        return array
    if device is not None:
        if order in (0, 1):
            import torch

            try:
                return _resample_torch_numpy(array, shape, order, device)
            except torch.OutOfMemoryError:  # the GPU is busy with the network: the CPU does it
                log.warning("not enough GPU memory to resample %s: resampling on the CPU", array.shape)
                torch.cuda.empty_cache()
        else:
            log.debug("resampling order %d has no torch implementation: scipy on the CPU", order)
    return _resample_scipy(array, shape, order)


def _resample_scipy(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """The scipy implementation of :func:`resample_array` (the reference)."""
    nd = len(shape)
    src = array.shape[:nd]
    if tuple(src) == tuple(shape):
        return array
    from scipy import ndimage  # not before: scans already on the target grid never load it (~0.2 s)

    scales, offsets = zip(*(index_map(a, b) for a, b in zip(src, shape)))
    if array.ndim > nd:
        flat = array.reshape(*src, -1)
        chans = [_resample_scipy(flat[..., c], shape, order) for c in range(flat.shape[-1])]
        return np.stack(chans, axis=-1).reshape(*shape, *array.shape[nd:])
    out_dtype = array.dtype if order == 0 else np.float32
    return ndimage.affine_transform(
        array.astype(out_dtype, copy=False) if order else array,
        matrix=np.array(scales),
        offset=np.array(offsets),
        output_shape=tuple(shape),
        order=order,
        mode="nearest",
        prefilter=order > 1,
    ).astype(out_dtype, copy=False)


def axis_taps(n_from: int, n_to: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each of the ``n_to`` new voxels along one axis reads the ``n_from`` old ones.

    The source coordinate is computed in float64 exactly as scipy's ``affine_transform``
    computes it for a diagonal matrix (``(i + offset / scale) * scale``, ``zoom_shift``);
    order 0 takes ``floor(x + 0.5)`` (ties round up, as scipy: not half-to-even), order 1
    ``floor(x)`` and the next voxel; both clamp to the edge (mode ``"nearest"``).

    Returns:
        ``lo``, ``hi`` int64 ``[n_to]`` source indices and float64 ``[n_to]`` weight of ``hi``
        (the value is ``(1 - w) * old[lo] + w * old[hi]``); order 0 has ``hi == lo``, ``w == 0``.

    Raises:
        ValueError: ``order`` is not 0 or 1.
    """
    if order not in (0, 1):
        raise ValueError(f"axis_taps supports orders 0 and 1, not {order}")
    scale, offset = index_map(n_from, n_to)
    shift = np.float64(offset) / np.float64(scale)  # what affine_transform hands zoom_shift
    coord = (np.arange(n_to, dtype=np.float64) + shift) * np.float64(scale)
    if order == 0:
        lo = np.clip(np.floor(coord + 0.5), 0, n_from - 1).astype(np.int64)
        return lo, lo, np.zeros(n_to)
    coord = np.clip(coord, 0.0, n_from - 1.0)  # past an edge: the border voxel, weight 0 on the other
    lo = np.floor(coord)
    weight = coord - lo
    lo = lo.astype(np.int64)
    return lo, np.minimum(lo + 1, n_from - 1), weight


def resample_tensor(x: torch.Tensor, shape: Sequence[int], order: int) -> torch.Tensor:
    """Torch :func:`resample_array` for orders 0 and 1, axis by axis on ``x``'s device.

    Args:
        x: ``[*spatial, *extra]``; order 1 needs a floating dtype (computed in that dtype).
        shape: The new spatial shape, one entry per leading axis of ``x``.
        order: 0 nearest (any dtype torch can gather), 1 linear.

    Returns:
        ``[*shape, *extra]``, ``x``'s dtype and device (``x`` itself when nothing changes).

    Raises:
        ValueError: ``order`` is not 0 or 1, or order 1 on a non-floating tensor.
    """
    import torch

    if order == 1 and not x.is_floating_point():
        raise ValueError(f"linear resampling needs a floating tensor, not {x.dtype}")
    nd = len(shape)
    # shrinking axes first keeps the intermediate arrays small
    for ax in sorted(range(nd), key=lambda a: shape[a] / max(x.shape[a], 1)):
        n, m = x.shape[ax], int(shape[ax])
        if n == m:
            continue
        lo, hi, weight = axis_taps(n, m, order)
        lo_t = torch.from_numpy(lo).to(x.device)
        if order == 0:
            x = x.index_select(ax, lo_t)
            continue
        view = [1] * x.ndim
        view[ax] = m
        w = torch.from_numpy(weight).to(device=x.device, dtype=x.dtype).view(view)
        x = torch.lerp(x.index_select(ax, lo_t), x.index_select(ax, torch.from_numpy(hi).to(x.device)), w)
    return x


def resample_argmax(
    probabilities: np.ndarray,
    shape: Sequence[int],
    dtype: np.dtype | type = np.uint8,
    device: torch.device | str | None = None,
    max_bytes: int = 2**27,
) -> np.ndarray:
    """Labels ``[*shape]``: the arg-max over classes of ``probabilities`` resampled linearly to
    ``shape`` (edge-aligned, as :func:`resample_array` with order 1), one slab of the last spatial
    axis at a time, so that the resampled probabilities never exist whole.

    This is how nnU-Net brings a prediction made at a target spacing back to a scan's own grid
    (Isensee et al., Nature Methods 2021: the softmax is resampled, then the arg-max taken); it
    keeps the boundary the network placed between voxels of the coarse grid, which a
    nearest-neighbour resampling of the labels turns into steps of the coarse grid.

    Args:
        probabilities: ``[K, *S]`` class probabilities (or logits: the arg-max is the same only for
            probabilities, which interpolate linearly without changing their order).
        shape: The new spatial shape ``[*shape]`` (one entry per spatial axis of ``probabilities``).
        dtype: Of the returned labels.
        device: Where the resampling runs (None: the CPU).
        max_bytes: Memory of one slab (float32 probabilities, read and interpolated), bytes.

    Returns:
        ``[*shape]`` class indices, ``dtype``; ties go to the lower class, as ``argmax``.

    Raises:
        ValueError: ``shape`` does not have one entry per spatial axis.
    """
    import torch

    nd = probabilities.ndim - 1
    if len(shape) != nd:
        raise ValueError(f"shape {list(shape)} needs {nd} entries for probabilities {probabilities.shape}")
    out = np.empty([int(v) for v in shape], dtype=dtype)
    if device is not None and torch.device(device).type != "cpu":
        try:
            return _argmax_slabs(probabilities, out, torch.device(device), max_bytes)
        except torch.OutOfMemoryError:  # the GPU is busy with the network: the CPU does it
            log.warning("not enough GPU memory to resample a softmax %s: on the CPU", probabilities.shape)
            torch.cuda.empty_cache()
    return _argmax_slabs(probabilities, out, torch.device("cpu"), max_bytes)


def _argmax_slabs(
    probabilities: np.ndarray, out: np.ndarray, dev: torch.device, max_bytes: int
) -> np.ndarray:
    """The slab loop of :func:`resample_argmax` on ``dev``, into ``out`` ``[*shape]``."""
    import torch

    nd, shape = probabilities.ndim - 1, out.shape
    k, n, m = probabilities.shape[0], probabilities.shape[-1], int(shape[-1])
    lo, hi, weight = axis_taps(n, m, 1)  # n == m: every voxel reads itself, weight 0
    # one plane of the last axis, at the larger of the two grids, three times (the block read and
    # the two sides of the interpolation)
    plane = max(int(np.prod(shape[:-1])), int(np.prod(probabilities.shape[1:-1])))
    step = max(1, int(max_bytes // max(3 * 4 * k * plane, 1)))
    for j0 in range(0, m, step):
        j1 = min(m, j0 + step)
        a, b = int(lo[j0:j1].min()), int(hi[j0:j1].max()) + 1
        block = np.ascontiguousarray(probabilities[..., a:b], dtype=np.float32)
        x = torch.from_numpy(block).to(dev).movedim(0, -1)  # [*S', b - a, K]
        w = torch.from_numpy(weight[j0:j1]).to(device=dev, dtype=x.dtype).view([1] * (nd - 1) + [-1, 1])
        x = torch.lerp(
            x.index_select(nd - 1, torch.from_numpy(lo[j0:j1] - a).to(dev)),
            x.index_select(nd - 1, torch.from_numpy(hi[j0:j1] - a).to(dev)),
            w,
        )
        x = resample_tensor(x, [*[int(v) for v in shape[:-1]], j1 - j0], 1)
        out[..., j0:j1] = x.argmax(-1).cpu().numpy().astype(out.dtype, copy=False)
    return out


def _resample_torch_numpy(
    array: np.ndarray, shape: Sequence[int], order: int, device: torch.device | str
) -> np.ndarray:
    """numpy in, :func:`resample_tensor` on ``device``, numpy out (dtypes as the scipy path)."""
    import torch

    out_dtype = array.dtype if order == 0 else np.dtype(np.float32)
    host = array.astype(np.float32, copy=False) if order else array
    if not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))
    host = np.ascontiguousarray(host)  # torch takes no negative strides (flipped axes)
    if not host.flags.writeable:  # read-only (memory-mapped) input: torch wants a writable buffer
        host = host.copy()
    signed = _SIGNED_VIEW.get(host.dtype)
    x = torch.from_numpy(host.view(signed) if signed is not None else host).to(device)
    out = resample_tensor(x, shape, order).cpu().numpy()
    if signed is not None:
        out = out.view(host.dtype)
    return out.astype(out_dtype, copy=False)


def resampled_affine(affine: np.ndarray, shape_from: Sequence[int], shape_to: Sequence[int]) -> np.ndarray:
    """Affine of the resampled grid (same extent, edge-aligned)."""
    m = np.eye(4)
    for ax, (a, b) in enumerate(zip(shape_from, shape_to)):
        scale, offset = index_map(a, b)
        m[ax, ax] = scale
        m[ax, 3] = offset
    return affine @ m
