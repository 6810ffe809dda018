"""What a plan says about the data it cannot serve well: too few cases or patients, tiny images,
undeclared voxel sizes, cases under half a patch (written as warning comments into the YAML and
printed by ``medseg plan``); and the small helpers the planner shares with the rules."""

from __future__ import annotations

import math

from medseg.planning.rules import Decision, _axes, spacing_undeclared


def dataset_warnings(fp: dict, folds: int) -> list[str]:
    """What the rules cannot serve well: too few cases, tiny images, the fingerprint's problems."""
    s, out = fp["summary"], []
    ds = fp["dataset"]
    labelled = int(ds.get("n_labelled", s["n_cases"]))
    n = int(ds.get("n_groups", labelled))
    what = ("patient", "patients") if n != labelled else ("labelled case", "labelled cases")
    if n <= 1:
        out.append(f"only {n} {what[0]}: nothing to validate on; the model will overfit it")
    elif n < folds:
        out.append(f"{n} {what[1]}, fewer than the {folds} folds: cross-validation needs data.folds <= {n}")
    shape = s.get("median_shape_after_resampling") or s["median_shape"]
    for a in _axes(fp):
        if shape[a] < 8:
            out.append(
                f"axis {a}: median {shape[a]:.3g} voxels, smaller than one pooling step needs (8): the "
                "network cannot pool along it and sees little context there"
            )
    if spacing_undeclared(fp):
        out.append(
            f"{s['spacing_undeclared_cases']} of {s['n_cases']} cases declare no voxel size (NIfTI units "
            "unknown, 1 x 1 x 1): unless the voxels really are 1 mm, the spacings, volumes and distances "
            "in this plan and in evaluations are in voxels, not mm"
        )
    out.extend(str(p) for p in s.get("problems") or [])
    return out


def sorted_decisions(decisions: list[Decision]) -> list[Decision]:
    """The last decision per key, in first-seen order."""
    last = {d.key: d for d in decisions}
    return [last[k] for k in dict.fromkeys(d.key for d in decisions)]


def mm3(patch: list[int], spacing: list[float | None] | None) -> float:
    """Volume of a patch in mm^3 (a missing spacing counts as 1 mm)."""
    sp = list(spacing or [1.0] * len(patch))
    return math.prod(p * float(s or 1.0) for p, s in zip(patch, sp))


def smaller_than_patch(
    fp: dict, target: list[float | None] | None, axes: list[int], patch: list[int]
) -> list[str]:
    """A warning per axis along which more than 10 % of the cases, resampled to ``target``, are
    smaller than half the patch (mostly padding: the patch cannot shrink further without losing
    the pooling levels the rest of the data needs)."""
    out = []
    for a, size in zip(axes, patch):
        shapes = []
        for case in fp["cases"]:
            new = target[a] if target and target[a] else case["spacing"][a]
            shapes.append(case["shape"][a] * case["spacing"][a] / new)
        small = sum(s < 0.5 * size for s in shapes)
        if shapes and small > 0.1 * len(shapes):
            out.append(
                f"axis {a}: {small} of {len(shapes)} cases are under half the patch ({size} voxels) after "
                "resampling: the network sees mostly padding there"
            )
    return out
