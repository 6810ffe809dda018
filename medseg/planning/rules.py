"""The planning rules of ``medseg plan``: one small function per decision, each with its reason.

Every rule reads the dataset fingerprint (``fingerprint.json``, axes in RAS: 0 = left-right,
1 = posterior-anterior, 2 = inferior-superior; lengths in mm) and returns :class:`Decision` s: a
dotted config key, its value, one sentence of reason and the fingerprint figures behind it.
:func:`medseg.planning.planner.plan_pipeline` applies them to a pipeline dict.

Where a rule follows nnU-Net (Isensee et al., "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation", Nature Methods 2021) it says so; where it departs,
the evidence is the hippocampus lever study of ``docs/benchmarks.md`` (left-right flips only,
batch 2, bf16, a schedule stretched over the time budget).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: nnU-Net's anisotropy threshold: the coarsest median spacing over 3x the others'.
ANISOTROPY = 3.0
#: A class is lateralised along an axis when its centroid lies more than this share of the image
#: extent off the centre, on the same side, in at least :data:`LATERAL_SHARE` of its cases.
LATERAL_MARGIN = 0.1
LATERAL_SHARE = 0.9
#: A foreground class under this share of the labelled voxels is rare: class weights.
RARE_CLASS = 0.01
#: Median foreground per case under these shares of the patch: oversample 0.5, then 0.66.
SMALL_FOREGROUND, TINY_FOREGROUND = 0.01, 0.001
#: Lesion sampling: several components per case, each under this share of the patch.
SMALL_COMPONENT = 0.01
#: Modality words of anatomical (radiological) images; other modalities (EM, microscopy,
#: photographs) have no anatomical orientation.
_ANATOMY_WORDS = {
    "CT",
    "MR",
    "MRI",
    "PET",
    "SPECT",
    "US",
    "ULTRASOUND",
    "XR",
    "CR",
    "DX",
    "MG",
    "XRAY",
    "FLAIR",
    "T1",
    "T1W",
    "T1GD",
    "T1CE",
    "T1C",
    "T2",
    "T2W",
    "ADC",
    "DWI",
    "PD",
    "T2F",
    "NM",
    "CBCT",
}


@dataclass(frozen=True)
class Decision:
    """One planned setting.

    Attributes:
        key: Dotted config key, e.g. ``"training.patch_size"``.
        value: The planned value (JSON-compatible).
        reason: One sentence: why this value.
        evidence: The fingerprint figure(s) behind it.
    """

    key: str
    value: Any
    reason: str
    evidence: str


@dataclass
class PlanResult:
    """A planned pipeline.

    Attributes:
        config: The pipeline dict (``PipelineConfig.model_validate`` accepts it).
        decisions: The planned keys with their reasons, in config order.
        warnings: What the rules cannot serve well (written as comments into the YAML).
        kind: ``"3d"`` or ``"2d"``.
        alternatives: Other proposed configurations (the 2D one beside a primary 3D one for
            strongly anisotropic data); cross-validation picks.
    """

    config: dict[str, Any]
    decisions: list[Decision]
    warnings: list[str] = field(default_factory=list)
    kind: str = "3d"
    alternatives: list[PlanResult] = field(default_factory=list)

    @property
    def configurations(self) -> list[PlanResult]:
        """Every proposed configuration, this (the primary) first."""
        return [self, *self.alternatives]


def _fmt(values: Any, unit: str = "") -> str:
    vals = [values] if np.isscalar(values) else list(values)
    return " x ".join(f"{float(v):.4g}" for v in vals) + (f" {unit}" if unit else "")


def _axes(fp: dict) -> list[int]:
    """Non-singleton axes of the median shape."""
    shape = fp["summary"]["median_shape"]
    return [a for a in range(len(shape)) if shape[a] > 1] or list(range(len(shape)))


# -- geometry ---------------------------------------------------------------------------------
def target_spacing_3d(fp: dict) -> Decision:
    """The median spacing; for anisotropic data the coarse axis gets its 10th percentile
    (nnU-Net: when that axis's median spacing is over 3x the others' and it has over 3x fewer
    voxels), not finer than the other axes."""
    s = fp["summary"]
    med, p10, shape = s["median_spacing"], s["spacing_p10"], s["median_shape"]
    target = [float(v) for v in med]
    axes = _axes(fp)
    worst = max(axes, key=lambda a: med[a])
    others = [a for a in axes if a != worst]
    ev = f"median spacing {_fmt(med, 'mm')}, median shape {_fmt(shape)}"
    if others:
        coarse = med[worst] > ANISOTROPY * max(med[a] for a in others)
        few = shape[worst] * ANISOTROPY < min(shape[a] for a in others)
        if coarse and few:
            target[worst] = max(float(p10[worst]), max(float(med[a]) for a in others))
            return Decision(
                "preprocessing.target_spacing",
                [round(v, 5) for v in target],
                f"median spacing, but the coarse axis {worst} at the 10th percentile of its spacings "
                "(nnU-Net's rule for anisotropic data: less interpolation across the thick slices)",
                f"{ev}; axis {worst}: 10th percentile {float(p10[worst]):.4g} mm, over {ANISOTROPY:g}x "
                "the other axes' spacing with under 1/3 of their voxels",
            )
    return Decision(
        "preprocessing.target_spacing",
        [round(v, 5) for v in target],
        "the dataset's median spacing per axis (nnU-Net): every case resampled to one grid",
        ev,
    )


def target_spacing_2d(fp: dict, slice_axis: int, spacing_3d: list[float] | None) -> Decision:
    """In-plane: the 3D target (the median); the slice axis keeps its spacing. Pictures with one
    spacing everywhere are not resampled."""
    s = fp["summary"]
    if np.allclose(s["spacing_p10"], s["spacing_p90"]):
        return Decision(
            "preprocessing.target_spacing",
            None,
            "every case has the same spacing: nothing to resample",
            f"spacing {_fmt(s['median_spacing'], 'mm')} in every case (10th = 90th percentile)",
        )
    target = list(spacing_3d or s["median_spacing"])
    target[slice_axis] = float(s["median_spacing"][slice_axis])
    value = [round(v, 5) for v in (target[:2] if slice_axis == 2 else target)]
    return Decision(
        "preprocessing.target_spacing",
        value,
        f"in-plane the median spacing; slices along axis {slice_axis} "
        + (
            "keep their own spacing (2D model)" if slice_axis == 2 else "at the median spacing too (2D model)"
        ),
        f"median spacing {_fmt(s['median_spacing'], 'mm')}",
    )


def dimensionality(fp: dict) -> tuple[list[str], str, str]:
    """``["2d"]`` for 2D data, ``["3d", "2d"]`` (3D primary) when the anisotropy is over 3,
    ``["2d", "3d"]`` (2D primary) for flat volumes that record no voxel size, else ``["3d"]``;
    with the reason and evidence."""
    s = fp["summary"]
    if s["is_2d"] or fp["dataset"].get("is_2d"):
        return ["2d"], "2D data: a 2D U-Net", f"median shape {_fmt(s['median_shape'])} (a size-1 axis)"
    ev = f"anisotropy {float(s['anisotropy']):.3g} (median spacing {_fmt(s['median_spacing'], 'mm')})"
    if spacing_undeclared(fp):
        shape = [float(v) for v in s["median_shape"] if v > 1]
        ratio = max(shape) / max(min(shape), 1.0)
        if ratio > ANISOTROPY:
            return (
                ["2d", "3d"],
                "the voxel size is not recorded, so the anisotropy cannot be measured, and the shape is "
                f"flat (over {ANISOTROPY:g}x fewer voxels along one axis): slices are probably thick, "
                "and a 3D network would take their unknown spacing for isotropic. A 2D U-Net on the "
                "slices (LGG, 6-minute ablations: 2D beat 3D by 0.171 and 0.085 Dice), a 3D U-Net as the "
                "alternative; cross-validation picks",
                f"{s['spacing_undeclared_cases']} of {s['n_cases']} cases declare no voxel size; median "
                f"shape {_fmt(s['median_shape'])}",
            )
    if float(s["anisotropy"]) > ANISOTROPY:
        return (
            ["3d", "2d"],
            f"strongly anisotropic (over {ANISOTROPY:g}): a 3D U-Net, and a 2D U-Net on the slices as the "
            "alternative; cross-validation picks (nnU-Net)",
            ev,
        )
    return ["3d"], "3D data: a 3D U-Net", ev


def spacing_undeclared(fp: dict) -> bool:
    """Whether most cases declare no voxel size (NIfTI units unknown and 1 x 1 x 1: a placeholder)."""
    s = fp["summary"]
    return 2 * int(s.get("spacing_undeclared_cases", 0)) > int(s["n_cases"])


def slice_axis(fp: dict) -> int:
    """2D models: the size-1 axis of 2D data, else the coarsest axis (the axis with the fewest
    voxels when the voxel size is not recorded)."""
    s = fp["summary"]
    shape = s["median_shape"]
    if 1 in [int(v) for v in shape]:
        return [int(v) for v in shape].index(1)
    if spacing_undeclared(fp):
        return int(np.argmin(shape))
    return int(np.argmax(s["median_spacing"]))


# -- intensities ------------------------------------------------------------------------------
_SCHEMES = {
    "ct": (
        "ct",
        "CT: clip to the dataset's foreground 0.5/99.5 percentiles, z-score with its foreground "
        "mean and std (nnU-Net's CT scheme: Hounsfield units are absolute)",
    ),
    "mr": ("zscore", "MR: per-case z-score (nnU-Net: MR intensities have no absolute unit)"),
    "8bit": (
        "percentile",
        "8-bit export: the exporter already windowed it, so each case's 0.5-99.5 percentiles are "
        "rescaled to [0, 1]",
    ),
    "other": ("zscore", "no absolute intensity unit known: per-case z-score (nnU-Net's non-CT default)"),
}


#: Cases whose median field of view is under this along every axis (mm) are crops around their
#: structures (LIDC nodule crops: 31 x 31 x 7.5 mm), not scans of a body region (>= 150 mm).
CROP_FOV_MM = 100.0
_CT_CROP_WHY = (
    "CT crops around the labelled structures: per-case z-score (the crop's own statistics set "
    "each lesion's contrast against its surroundings; on the LIDC nodule crops it beat nnU-Net's "
    "CT scheme in every comparison: +0.035, +0.039 and +0.051 Dice in 6-minute runs, +0.009 and "
    "+0.011 in 30 minutes)"
)


def crop_field_of_view(fp: dict) -> list[float] | None:
    """The median field of view (mm per axis) when it is under :data:`CROP_FOV_MM` along every
    axis (the cases are crops), else None; None too when the voxel size is not recorded."""
    s = fp["summary"]
    if spacing_undeclared(fp):
        return None
    fov = [float(n) * float(sp) for n, sp in zip(s["median_shape"], s["median_spacing"])]
    return fov if max(fov) < CROP_FOV_MM else None


def normalization(fp: dict) -> Decision:
    """One scheme per channel from its ``looks_like``: ct -> ``ct`` (``zscore`` for crops, see
    :func:`crop_field_of_view`), mr -> ``zscore``, 8bit -> ``percentile``, other -> ``zscore``;
    a single scheme when every channel agrees."""
    chans = fp["summary"]["channels"]
    crops = crop_field_of_view(fp)
    schemes, reasons, ev = [], [], []
    for c in chans:
        scheme, why = _SCHEMES.get(c.get("looks_like", "other"), _SCHEMES["other"])
        if scheme == "ct" and crops is not None:
            scheme, why = "zscore", f"{_CT_CROP_WHY}; median field of view {_fmt(crops, 'mm')}"
        schemes.append(scheme)
        if why not in reasons:
            reasons.append(why)
        ev.append(
            f"{c.get('name', '?')}: looks like {c.get('looks_like', 'other')} (foreground 0.5-99.5 % "
            f"{float(c['p00_5']):.4g}..{float(c['p99_5']):.4g}, integer {bool(c.get('integer_valued'))})"
        )
    value: Any = schemes[0] if len(set(schemes)) == 1 else schemes
    reason = "; ".join(reasons) + ("" if isinstance(value, str) else " (one scheme per channel)")
    return Decision("preprocessing.normalization", value, reason, "; ".join(ev))


# -- mirroring --------------------------------------------------------------------------------
def is_anatomical(fp: dict) -> bool:
    """A radiological modality (CT, MR and its sequences, PET, ultrasound, X-ray) declared or
    recognised in any channel; unknown modalities of 3D scans count as anatomy too (the cautious
    side: mirroring a body across a non-symmetric axis costs Dice), 2D pictures do not."""
    ds = fp["dataset"]
    names = [str(ds.get("modality") or "")] + [str(c) for c in ds.get("channels") or []]
    words = {w for n in names for w in re.split(r"[^A-Z0-9]+", n.upper()) if w}
    if words & _ANATOMY_WORDS or any(c.get("looks_like") in ("ct", "mr") for c in fp["summary"]["channels"]):
        return True
    known = bool(ds.get("modality"))
    return not known and not fp["summary"]["is_2d"]


def lateralised(fp: dict, axis: int) -> list[str]:
    """Classes whose centroid lies more than :data:`LATERAL_MARGIN` off the centre along ``axis``,
    on the same side, in at least :data:`LATERAL_SHARE` of the cases holding them (e.g. left vs
    right kidney). From the cases' ``centroid_rel``; without cases, from the summary's range."""
    names, per_class = fp["dataset"].get("labels", {}), {}
    for case in fp.get("cases") or []:
        for k, c in (case.get("classes") or {}).items():
            per_class.setdefault(k, []).append(float(c["centroid_rel"][axis]) - 0.5)
    if not per_class:  # summary only: every case off-centre on one side
        for k, c in fp["summary"]["classes"].items():
            lo, hi = float(c["centroid_rel_min"][axis]) - 0.5, float(c["centroid_rel_max"][axis]) - 0.5
            per_class[k] = [lo, hi]
    out = []
    for k, offs in sorted(per_class.items(), key=lambda kv: int(kv[0])):
        off = np.array(offs)
        side = max(np.mean(off > LATERAL_MARGIN), np.mean(off < -LATERAL_MARGIN))
        if side >= LATERAL_SHARE:
            out.append(f"{names.get(str(k), k)} ({100 * side:.0f} % of its cases on one side)")
    return out


def mirror_axes(fp: dict, kind: str, slice_ax: int | None) -> list[Decision]:
    """``augmentation.flip_axes`` and ``inference.tta``: 3D anatomy mirrors left-right (axis 0)
    only; pictures and non-anatomical images every axis; an axis along which a class is
    lateralised is never mirrored (a flip would put it on the wrong side, or swap paired classes).

    Axes are patch axes: for a 2D model the volume axes other than ``slice_ax``, in order.
    """
    anatomy = is_anatomical(fp)
    vol_axes = [a for a in range(3) if a != slice_ax] if kind == "2d" else [0, 1, 2]
    candidates = [0] if anatomy else list(vol_axes)
    candidates = [a for a in candidates if a in vol_axes]
    dropped = {a: lateralised(fp, a) for a in candidates}
    keep = [vol_axes.index(a) for a in candidates if not dropped[a]]
    why = (
        "anatomy in RAS: mirror left-right only (lever study: flipping along all axes cost 0.056 / 0.039 "
        "Dice, as anterior-posterior and inferior-superior are not symmetric)"
        if anatomy
        else "no anatomical orientation (pictures, EM, microscopy): mirror every axis (nnU-Net)"
    )
    lat = [f"axis {a}: {', '.join(v)}" for a, v in dropped.items() if v]
    if lat:
        why += "; not along an axis where a class is lateralised (a flip would put it on the wrong side)"
    modality = fp["dataset"].get("modality") or "not declared"
    ev = f"modality {modality}, " + (("lateralised: " + "; ".join(lat)) if lat else "no class lateralised")
    out = [Decision("augmentation.flip_axes", keep, why, ev)]
    out.append(
        Decision(
            "inference.tta",
            bool(keep),
            "test-time mirroring along the trained axes only (+0.001 / +0.000 Dice left-right; mirroring "
            "along untrained axes is never done)"
            if keep
            else "no trained mirror axes: no test-time mirroring",
            f"flip axes {keep}",
        )
    )
    if not anatomy and kind == "2d":
        out.append(
            Decision(
                "augmentation.rotation_degrees",
                180.0,
                "no anatomical orientation: rotations over the full circle (the ISBI recipe, as "
                "Ronneberger et al. 2015)",
                f"modality {modality}, 2D",
            )
        )
        out.append(
            Decision("augmentation.rotation_p", 0.5, "rotations on half of the patches (ISBI recipe)", "")
        )
    return out


# -- sampling and loss ------------------------------------------------------------------------
#: Share of the training patches that get one of the dataset's channel substitutions.
SUBSTITUTION_P = 0.2


def channel_substitution(fp: dict) -> list[Decision]:
    """``augmentation.channel_substitutions``: where some cases fill a channel with a copy of
    another (a missing sequence), train with that copy on :data:`SUBSTITUTION_P` of the patches,
    so the network knows the copy when a test case has it (modality dropout in the data's own
    form; Havaei et al., "HeMIS", MICCAI 2016). Nothing when no case has copied channels."""
    found = fp["summary"].get("channel_substitutions") or []
    if not found:
        return []
    names = fp["dataset"].get("channels") or [c.get("name") for c in fp["summary"]["channels"]]

    def name(c: int) -> str:
        return str(names[c]) if c < len(names) else f"channel {c}"

    patterns = [{"source": int(p["source"]), "replaced": [int(c) for c in p["replaced"]]} for p in found]
    ev = "; ".join(
        f"{', '.join(name(c) for c in p['replaced'])} = copy of {name(p['source'])} in {p['cases']} "
        f"of {fp['summary']['n_cases']} cases"
        for p in found
    )
    why = (
        "some cases fill a missing sequence with a copy of another (the copied channels are "
        "identical voxel for voxel): training patches get the same copies, so a test case with a "
        "copy is not an unknown contrast"
    )
    return [
        Decision("augmentation.channel_substitutions", patterns, why, ev),
        Decision(
            "augmentation.channel_substitution_p",
            SUBSTITUTION_P,
            f"one patch in {round(1 / SUBSTITUTION_P)} gets one of them (drawn uniformly): the cases "
            "with copies alone are too few for the network to learn them",
            ev,
        ),
    ]


def _per_case_foreground(fp: dict, slice_ax: int | None) -> list[float]:
    """Foreground volume (mm^3) per labelled case; for 2D models on volumes, per slice (mm^2 x 1)."""
    out = []
    for case in fp.get("cases") or []:
        classes = (case.get("classes") or {}).values()
        vol = sum(float(c["volume_mm3"]) for c in classes)
        if vol and slice_ax is not None and int(case["shape"][slice_ax]) > 1:
            vol /= max(max(float(c["extent_mm"][slice_ax]) for c in classes), 1e-6)
        if classes:
            out.append(vol)
    if not out:
        out = [sum(float(c["median_volume_mm3"]) for c in fp["summary"]["classes"].values())]
    return out


def foreground_oversample(fp: dict, patch_mm3: float, slice_ax: int | None) -> Decision:
    """0.33 of the patches centred on foreground (nnU-Net); 0.5 when the median foreground is
    under 1 % of the patch, 0.66 under 0.1 %."""
    share = float(np.median(_per_case_foreground(fp, slice_ax))) / max(patch_mm3, 1e-9)
    ev = f"median foreground {100 * share:.3g} % of the patch ({patch_mm3:.4g} mm^3)"
    if share < TINY_FOREGROUND:
        return Decision(
            "training.foreground_oversample",
            0.66,
            "tiny foreground: two thirds of the "
            f"patches centred on it (under {100 * TINY_FOREGROUND:g} % of a patch)",
            ev,
        )
    if share < SMALL_FOREGROUND:
        return Decision(
            "training.foreground_oversample",
            0.5,
            "small foreground: half of the patches "
            f"centred on it (under {100 * SMALL_FOREGROUND:g} % of a patch)",
            ev,
        )
    return Decision(
        "training.foreground_oversample",
        0.33,
        "a third of the patches centred on foreground (nnU-Net; the lever study: 0 cost 0.005 / 0.007 Dice)",
        ev,
    )


def class_weighting(fp: dict) -> Decision:
    """ENet class weights (bounded 1.4-50) when a foreground class has under 1 % of the labelled
    voxels; else none (the Dice term already weighs classes equally)."""
    classes = fp["summary"]["classes"]
    rare = {k: float(c["frequency"]) for k, c in classes.items() if float(c["frequency"]) < RARE_CLASS}
    ev = ", ".join(f"{c.get('name', k)} {100 * float(c['frequency']):.3g} %" for k, c in classes.items())
    ev = f"share of the labelled voxels: {ev}"
    if len(classes) > 1 and rare:
        return Decision(
            "loss.class_weighting",
            "enet",
            f"rare class(es) under {100 * RARE_CLASS:g} % of the labelled voxels: ENet weights (Paszke et "
            "al. 2016, bounded 1.4-50, so a tiny class cannot dominate the cross-entropy)",
            ev,
        )
    return Decision(
        "loss.class_weighting", "none", "no rare class: no class weights (the Dice term balances classes)", ev
    )


def foreground_sampling(fp: dict, patch_mm3: float, slice_ax: int | None) -> Decision:
    """``lesion`` when a class has over one component per case (median) and its components are
    under 1 % of the patch: each lesion is drawn as often as any other, not by its voxels."""
    hits = []
    for k, c in fp["summary"]["classes"].items():
        comps = float(c.get("median_components", 1))
        size = float(c["median_volume_mm3"]) / max(comps, 1.0)
        if slice_ax is not None:
            size /= max(float(fp["summary"]["median_spacing"][slice_ax]), 1e-6)
        if comps > 1 and size / patch_mm3 < SMALL_COMPONENT:
            hits.append(
                f"{c.get('name', k)}: {comps:g} components of {100 * size / patch_mm3:.2g} % of a patch"
            )
    if hits:
        return Decision(
            "training.foreground_sampling",
            "lesion",
            "several small lesions per case: foreground patches centred on a uniformly drawn lesion, "
            "so small lesions are seen as often as large ones",
            "; ".join(hits),
        )
    return Decision(
        "training.foreground_sampling",
        "voxel",
        "foreground patches centred on a labelled voxel (nnU-Net): one or few large components per case",
        "median components per case: "
        + ", ".join(
            f"{c.get('name', k)} {float(c.get('median_components', 1)):g}"
            for k, c in fp["summary"]["classes"].items()
        ),
    )
