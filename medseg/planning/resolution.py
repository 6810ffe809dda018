"""A coarser grid when the budget cannot train at the full resolution.

A time budget buys a number of training steps; what a network learns from them depends on how many
times it sees the training voxels (*passes*). The hippocampus plan, which matched the hand-tuned
recipe, saw 57 (3325 steps in 28 minutes), ISBI's 81 and LIDC's 85, while the 5-minute hippocampus
runs (about 15 passes) stayed 0.03 Dice short. LGG's 256 x 256 slices get about 14 passes in 30
CPU minutes; planned with its in-plane resolution halved (4x the passes; nnU-Net's
low-resolution stage plays the same part for scans too large for one patch), its 2D U-Net scored
0.624 Dice per held-out patient (pooled 0.678) instead of 0.479 (0.592) in 30-minute runs
(``docs/benchmarks.md``).

The rule: when the budget gives fewer than :data:`MIN_PASSES` passes, every patch axis with at
least ``2 * MIN_COARSE_VOXELS`` voxels gets a voxel :data:`COARSE_FACTOR` times larger, provided
the labels survive it: the label round trip (:mod:`.round_trip`, nearest neighbour both ways, a
bound: predictions go back through their softmax, which keeps more) may cost at most
:data:`MAX_COARSE_LOSS` Dice.
"""

from __future__ import annotations

import math
from typing import Any

from medseg.planning import topology as tp
from medseg.planning.rules import Decision

#: Fewer passes over the training voxels than this in the budget ask for a coarser grid: between
#: LGG's 14, which a coarser grid improved, and the hippocampus plan's 57, which matched the
#: hand-tuned recipe.
MIN_PASSES = 40.0
#: The coarser voxel, per coarsened axis.
COARSE_FACTOR = 2.0
#: An axis is coarsened only while it keeps at least this many voxels.
MIN_COARSE_VOXELS = 64
#: Dice the coarser grid may cost the labels (round trip, nearest neighbour both ways). On LGG
#: the bound is 0.039 at 2x, and the softmax way back keeps 0.992 of the labels (0.008).
MAX_COARSE_LOSS = 0.05
#: Share of the labelled cases that trains (the rest validates: ``data.val_fraction``).
TRAIN_SHARE_OF_CASES = 0.8


def training_passes(fp: dict, fit: tp.Fit, median_full: list[float]) -> float:
    """How many times the planned steps see the training voxels: ``steps * batch * patch voxels``
    over ``training cases * median case voxels`` (at the planned spacing; a 2D case is its stack
    of slices)."""
    n = int(fp["dataset"].get("n_labelled", fp["summary"]["n_cases"]))
    cases = max(1.0, TRAIN_SHARE_OF_CASES * n)
    seen = float(fit.steps) * fit.batch * math.prod(fit.topo.patch)
    return seen / (cases * math.prod(max(1.0, v) for v in median_full))


def coarser_target(
    fp: dict,
    target: list[float | None] | None,
    median_full: list[float],
    patch_axes: list[int],
    kept_axis: int | None = None,
) -> list[float | None] | None:
    """The target spacing (3 values; ``kept_axis``, the slices of a 2D model that keep their own
    spacing, None; any other axis the plan kept on each case's grid takes the median spacing) with
    each patch axis of at least ``2 * MIN_COARSE_VOXELS`` median voxels :data:`COARSE_FACTOR`
    times coarser; None when no axis qualifies."""
    med = [float(v) for v in fp["summary"]["median_spacing"]]
    out: list[float | None] = [float(t) if t is not None else m for t, m in zip(target or [None] * 3, med)]
    big = [a for a in patch_axes if median_full[a] >= 2 * MIN_COARSE_VOXELS]
    for a in big:
        out[a] = round(COARSE_FACTOR * float(out[a] or med[a]), 5)
    if kept_axis is not None:
        out[kept_axis] = None
    return out if big else None


def coarse_decision(
    target: list[float | None], s_ax: int | None, passes_full: float, measured: dict[str, Any]
) -> Decision:
    """The ``preprocessing.target_spacing`` decision of a coarsened plan (2D models with slices
    along axis 2 give the two in-plane values, as :func:`~.rules.target_spacing_2d`)."""
    value: list[Any] = list(target[:2]) if s_ax == 2 else list(target)
    return Decision(
        "preprocessing.target_spacing",
        value,
        f"{COARSE_FACTOR:g}x coarser than the cases for the budget: at their own resolution it "
        f"allows about {passes_full:.0f} passes over the training voxels, under {MIN_PASSES:g}; "
        "predictions go back to each scan's grid through the softmax",
        f"labels resampled to {value} and back keep Dice {measured['dice_mean']:.3f} (mean of "
        f"{measured['cases']} cases, lowest {measured['dice_min']:.3f}; at most "
        f"{MAX_COARSE_LOSS:g} may be lost)",
    )


def coarse_enough(measured: dict[str, Any]) -> bool:
    """Whether the label round trip at the coarser target costs at most :data:`MAX_COARSE_LOSS`."""
    return 1.0 - float(measured["dice_mean"]) <= MAX_COARSE_LOSS
