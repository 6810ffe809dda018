"""A prediction on the network's grid, mapped back onto the scan's own grid.

The preprocessing the plan recorded is inverted
(:meth:`~medseg.transforms.preprocess.plan.Plan.invert`): resampled back, uncropped and
reoriented. Labels predicted on the scan's own spacing go back voxel for voxel. A scan the plan
resampled goes back as nnU-Net exports it (Isensee et al., Nature Methods 2021): the softmax is
resampled linearly and the arg-max taken on the scan's grid, a slab at a time
(:meth:`~medseg.transforms.preprocess.plan.Plan.invert_argmax`), so a boundary the network put
between two coarse voxels is not turned into a staircase of the coarse grid. That needs the whole
logits and softmax ``[K, *S]`` on the network's grid (the labels-only prediction holds one window
of logits at a time), so it is done up to :data:`SMOOTH_INVERSION_MAX_BYTES`; past that, and for
region (sigmoid) models, the labels go back by nearest neighbour.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.volume import Volume

if TYPE_CHECKING:
    import torch

    from medseg.inference.prediction import PreparedCase

log = logging.getLogger(__name__)

#: A case predicted on a resampled grid goes back to its own grid through its softmax when the
#: logits and softmax ``[K, *S]`` (float32, two copies) take at most this much memory.
SMOOTH_INVERSION_MAX_BYTES = 2**30


def keeps_softmax(predictor: Any, prepared: PreparedCase) -> bool:
    """Whether ``predictor`` maps this case back through its softmax: a softmax model, a case the
    plan resampled, and logits and softmax under :data:`SMOOTH_INVERSION_MAX_BYTES`."""
    record = prepared.case.record
    crop = [b - a for a, b in zip(record.crop_start, record.crop_stop)]
    if predictor.regions or list(record.resampled_shape) == crop:
        return False
    nbytes = 2 * 4 * (predictor.max_label + 1) * int(np.prod(record.resampled_shape))
    if nbytes > SMOOTH_INVERSION_MAX_BYTES:
        log.info(
            "labels mapped back to the scan's grid by nearest neighbour: its softmax would take %.1f GB",
            nbytes / 2**30,
        )
        return False
    return True


def source_probabilities(predictor: Any, probabilities: torch.Tensor, record: Any) -> Volume:
    """Probabilities ``[K, *S]`` on the source grid, ``[K, X, Y, Z]`` (linear; the voxels cropped
    away are certain background for a softmax, 0 for region sigmoids)."""
    device = predictor._resample_device
    soft = predictor.plan.invert(probabilities.numpy(), record, order=1, fill=0.0, device=device)
    if not predictor.regions:
        outside = np.ones(soft.array.shape[1:], dtype=bool)
        outside[predictor.plan.source_crop_box(record)] = False
        soft.array[0][outside] = 1.0
    return soft


def source_labels(
    predictor: Any, prepared: PreparedCase, labels: torch.Tensor, soft: Volume | None
) -> Volume:
    """The labels ``[X, Y, Z]`` on the source grid: through the softmax the predictor kept for a
    resampled case (as the arg-max of ``soft``, the probabilities already on the source grid, when
    given: the mask is then the arg-max of the probability map written beside it), else ``labels``
    ``[*S]`` by nearest neighbour. The kept softmax is dropped from ``prepared``."""
    kept, prepared.softmax = prepared.softmax, None
    record, device, dtype = prepared.case.record, predictor._resample_device, labels.numpy().dtype
    if kept is None:
        return predictor.plan.invert(labels.numpy(), record, order=0, device=device)
    if soft is not None:
        return Volume(soft.array.argmax(0).astype(dtype), soft.affine, soft.meta)
    return predictor.plan.invert_argmax(kept.numpy(), record, dtype=dtype, device=device)
