"""What resampling to a target spacing does to a dataset's labels, measured on the labels.

A model trained at a target spacing learns labels resampled to that grid (nearest neighbour) and
predicts there; its prediction goes back to each scan's own grid through its softmax
(:mod:`medseg.inference.inversion`). For small structures the resampling alone loses Dice: a lung
nodule of a few hundred voxels loses its boundary voxels on the way. :func:`label_round_trip`
measures it before any training, with the preprocessing's own resampling (edge-aligned, labels
nearest both ways: a bound, as the softmax way back keeps more): each sampled label is resampled to
the target and back, and compared with itself. The planner keeps every case on its own grid when
the round trip alone costs more Dice than the planning rules' own effects
(:func:`resampling_fidelity`), and coarsens a grid for the budget only within a larger loss
(:mod:`.resolution`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Labelled cases measured at most, spread evenly over the dataset's order.
MAX_CASES = 32


def round_trip_dice(label: np.ndarray, spacing: Sequence[float], target: Sequence[float | None]) -> float:
    """Mean Dice over the classes present in ``label`` after resampling it to ``target`` and back.

    Args:
        label: Integer label map ``[X, Y, Z]`` (canonical orientation, as the preprocessing sees it).
        spacing: Its voxel size (mm) per axis.
        target: Target spacing (mm) per axis; None keeps an axis.

    Returns:
        The mean over the classes > 0 present of ``2 |A and B| / (|A| + |B|)``; 1.0 for an empty
        label or a grid the target does not change.
    """
    from medseg.transforms.preprocess.resample import resample_array, resampled_shape

    shape = label.shape[:3]
    new_shape = resampled_shape(shape, spacing, target)
    values = [int(v) for v in np.unique(label) if v > 0]
    if not values or tuple(new_shape) == tuple(shape):
        return 1.0
    back = resample_array(resample_array(label, new_shape, order=0), shape, order=0)
    dice = []
    for v in values:
        a, b = label == v, back == v
        dice.append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
    return float(np.mean(dice))


def label_round_trip(
    manifest: Any, target: Sequence[float | None], max_cases: int = MAX_CASES
) -> dict[str, Any]:
    """The round-trip Dice of up to ``max_cases`` labelled training cases of ``manifest`` at
    ``target`` (``split: test`` cases are never read: nothing of the held-out data shapes a plan).

    Args:
        manifest: A loaded :class:`~medseg.data.manifest.Manifest` (absolute paths).
        target: Target spacing (mm) in the canonical RAS axis order; None keeps an axis.
        max_cases: Cases measured at most, spread evenly over the labelled cases.

    Returns:
        ``{"dice_mean", "dice_min", "cases"}`` over the measured cases.

    Raises:
        MedsegError: an unreadable label (one line naming it).
    """
    from medseg import geometry
    from medseg.data.cases import read_label
    from medseg.planning.case_stats import ORIENTATION

    labelled = [c for c in manifest.cases if c.label and getattr(c, "split", None) != "test"]
    step = max(1, len(labelled) / max(1, max_cases))
    picked = [labelled[int(i * step)] for i in range(min(max_cases, len(labelled)))]
    scores = []
    for case in picked:
        reference = case.images[0] if Path(case.images[0]).is_dir() else None
        vol = read_label(case.label, reference, manifest.label_map)
        arr, affine = geometry.reorient_array(vol.array, vol.affine, ORIENTATION)
        scores.append(round_trip_dice(arr, geometry.spacing(affine), list(target)))
    out = {
        "dice_mean": float(np.mean(scores)) if scores else 1.0,
        "dice_min": float(np.min(scores)) if scores else 1.0,
        "cases": len(scores),
    }
    log.debug("label round trip at %s: %s", list(target), out)
    return out


#: The round trip may cost at most this much Dice (mean over the measured cases): the size of the
#: lever study's effects (0.02 to 0.05 Dice for mirroring along asymmetric axes).
MAX_ROUND_TRIP_LOSS = 0.02


def resampling_fidelity(decision: Any, measured: dict[str, Any] | None) -> Any:
    """The target spacing decision, kept or withdrawn by what the round trip costs the labels.

    Args:
        decision: The ``preprocessing.target_spacing`` :class:`~medseg.planning.rules.Decision`.
        measured: :func:`label_round_trip` at its value, or None (not measured: kept as it is).

    Returns:
        ``decision`` with the measurement added to its evidence, or, when the round trip loses
        more than :data:`MAX_ROUND_TRIP_LOSS` Dice on average, a decision for no resampling
        (``None``: every case stays on its own grid).
    """
    from medseg.planning.rules import Decision

    if measured is None or decision.value is None:
        return decision
    ev = (
        f"labels resampled to {decision.value} mm and back keep Dice {measured['dice_mean']:.3f} "
        f"(mean of {measured['cases']} cases, lowest {measured['dice_min']:.3f})"
    )
    if 1.0 - measured["dice_mean"] <= MAX_ROUND_TRIP_LOSS:
        return Decision(decision.key, decision.value, decision.reason, f"{decision.evidence}; {ev}")
    return Decision(
        decision.key,
        None,
        f"no resampling: the labelled structures are too small for it, as the round trip to the "
        f"planned target spacing and back alone costs over {MAX_ROUND_TRIP_LOSS:g} Dice; every case "
        "is trained and predicted on its own grid",
        f"{decision.evidence}; {ev}",
    )
