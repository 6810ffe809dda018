"""``plan_pipeline``: a whole pipeline dict from a dataset fingerprint and a time budget.

The rules live in :mod:`medseg.planning.rules` (data-driven decisions) and
:mod:`medseg.planning.topology` (patch, network and batch fitted to the memory limit and to the
number of steps the budget allows). This module applies them in order and assembles the config.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.planning import resolution as rs
from medseg.planning import topology as tp
from medseg.planning.problems import dataset_warnings, mm3, smaller_than_patch, sorted_decisions
from medseg.planning.round_trip import resampling_fidelity
from medseg.planning.rules import (
    Decision,
    PlanResult,
    channel_substitution,
    class_weighting,
    dimensionality,
    foreground_oversample,
    foreground_sampling,
    mirror_axes,
    normalization,
    slice_axis,
    target_spacing_2d,
    target_spacing_3d,
)
from medseg.planning.schedule import schedule, val_pass_seconds

#: What resampling the labels to a target spacing (mm) and back keeps (see :mod:`.round_trip`).
RoundTrip = Callable[[list], dict]

#: The planned minimum of training steps in the budget: the 5-minute hippocampus runs (875-1157
#: steps) already reach 0.866 / 0.852 Dice, within 0.03 of the 28-minute recipe (4959 steps).
MIN_STEPS = 1000
#: Share of the budget left for training steps (validation <= 10 %, data loading, checkpoints).
TRAIN_SHARE = 0.85
_UNET_WHY = (
    "medseg's U-Net with per-axis pooling (lever study: nnU-Net's DynUNet scored the same, "
    "-0.002 / +0.001 Dice; its deep supervision cost 0.020 / 0.011)"
)
#: Default memory limit: 8 GB on CUDA (nnU-Net's reference GPU); a quarter of the RAM on a CPU
#: (the rest holds the cached cases, the loader workers and the system).
CUDA_MEMORY_GB, CPU_RAM_SHARE = 8.0, 0.25


def default_memory_gb(device: str) -> float:
    """8 GB on CUDA; on a CPU a quarter of the physical RAM (8 GB when it cannot be read)."""
    if device.startswith("cuda"):
        return CUDA_MEMORY_GB
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8.0
    return round(CPU_RAM_SHARE * ram, 1)


def _set(cfg: dict, key: str, value: Any) -> None:
    *head, last = key.split(".")
    for k in head:
        cfg = cfg.setdefault(k, {})
    cfg[last] = value


def _plain(value: Any) -> Any:
    """NumPy scalars and tuples as plain Python values (YAML- and JSON-safe)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def build_config(decisions: list[Decision]) -> dict[str, Any]:
    """A pipeline dict from decisions (later ones win), sections in the usual order."""
    cfg: dict[str, Any] = {}
    for d in decisions:
        _set(cfg, d.key, _plain(d.value))
    order = [
        "name",
        "description",
        "labels",
        "data",
        "preprocessing",
        "model",
        "loss",
        "augmentation",
        "training",
        "inference",
    ]
    return {k: cfg[k] for k in order if k in cfg} | {k: v for k, v in cfg.items() if k not in order}


def _check(fp: dict, budget_minutes: float, device: str) -> None:
    for key in ("dataset", "summary"):
        if not isinstance(fp.get(key), dict):
            raise ConfigError(f"the fingerprint has no {key!r} section", hint="recompute it with medseg plan")
    if not budget_minutes or budget_minutes <= 0:
        raise ConfigError(
            f"the time budget must be positive, got {budget_minutes}", hint="give --budget MINUTES"
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"unknown device {device!r}", hint="plan for cpu or cuda")


def _resampled_median(fp: dict, spacing: list[float | None] | None) -> list[float]:
    """Median shape (voxels per axis) of the cases resampled to ``spacing`` (None: kept)."""
    cases = fp.get("cases") or []
    if not cases:
        shape = fp["summary"].get("median_shape_after_resampling") or fp["summary"]["median_shape"]
        med = fp["summary"]["median_spacing"]
        return [float(s) * float(m) / float(t or m) for s, m, t in zip(shape, med, spacing or med)]
    rows = []
    for c in cases:
        t = spacing or c["spacing"]
        rows.append([int(n) * float(s) / float(ts or s) for n, s, ts in zip(c["shape"], c["spacing"], t)])
    return [float(v) for v in np.median(np.array(rows), axis=0)]


def _common(fp: dict, kind: str, manifest: str, budget: float, device: str, folds: int) -> list[Decision]:
    ds = fp["dataset"]
    slug = re.sub(r"[^a-z0-9]+", "_", str(ds.get("name") or "dataset").lower()).strip("_") or "dataset"
    labels = {int(k): str(v) for k, v in (ds.get("labels") or {}).items()}
    out = [
        Decision("name", f"{slug}_{kind}", "dataset name and configuration", f"dataset {ds.get('name')!r}"),
        Decision(
            "description",
            f"planned by medseg plan: {kind.upper()} U-Net, {budget:g}-minute budget on {device}",
            "what was planned",
            "",
        ),
        Decision("labels", labels, "the dataset's classes", f"{len(labels)} labels"),
        Decision(
            "data.manifest", manifest, "the dataset the fingerprint measured", f"source {fp.get('source')}"
        ),
    ]
    chans = [str(c) for c in ds.get("channels") or []]
    if len(chans) > 1:
        out.append(
            Decision(
                "data.channels",
                chans,
                "channel order pinned: training refuses a manifest whose channels differ",
                f"{len(chans)} channels",
            )
        )
    n = int(ds.get("n_labelled", fp["summary"]["n_cases"]))
    groups = int(ds.get("n_groups", n))
    units = f"{n} labelled" + (
        f", {groups} patients (folds keep a patient's cases together)" if groups != n else ""
    )
    if 2 <= groups < folds:
        out.append(
            Decision("data.folds", groups, f"fewer labelled cases (patients) than {folds} folds", units)
        )
    else:
        out.append(Decision("data.folds", folds, "cross-validation folds (medseg plan --folds)", units))
    out.append(
        Decision(
            "preprocessing.orientation",
            "RAS",
            "every case reoriented to RAS, the frame the fingerprint measured in (axis 0 = left-right)",
            "",
        )
    )
    return out


def _network_decisions(
    fit: tp.Fit,
    kind: str,
    device: str,
    median: list[float],
    limit_gb: float,
    why_batch: str,
    mem_gb: float,
    probed: bool,
) -> list[Decision]:
    t = fit.topo
    pools = ", ".join(f"axis {a}: {n}" for a, n in enumerate(t.pools_per_axis))
    base_why = (
        "16 on a CPU (the shipped recipes: a 32-wide net costs about 4x the FLOPs per step, "
        "so 4x fewer steps in the budget)"
        if not device.startswith("cuda")
        else "32 on CUDA (nnU-Net)"
    )
    cap = 320 if kind == "3d" else 512
    notes = "; ".join(fit.notes) or "no shrinking needed"
    how = "probed on the device" if probed else "estimated from FLOPs (no probe)"
    out = [
        Decision(
            "model.params.features",
            list(t.features),
            f"{t.levels} levels, width doubling from {base_why}, capped at {cap} (nnU-Net)",
            f"pooling steps per axis: {pools}",
        ),
    ]
    if "strides" in t.unet_params():
        out.append(
            Decision(
                "model.params.strides",
                t.unet_params()["strides"],
                "nnU-Net's pooling: an axis is "
                "pooled while its map keeps >= 4 voxels and its spacing is < 2x the finest",
                f"patch {list(t.patch)}",
            )
        )
    out.append(
        Decision(
            "training.patch_size",
            list(t.patch),
            "the median shape after resampling, rounded up "
            "to the pooling divisor, shrunk (nnU-Net's axis rule) to the memory limit and the "
            f"steps the budget allows: {notes}",
            f"median shape {tp_fmt(median)}; estimated "
            f"memory {mem_gb:.3g} of {limit_gb:.3g} GB; {fit.step_seconds:.3g} s/step ({how}), "
            f"about {fit.steps:.0f} steps",
        )
    )
    if kind == "3d" and device.startswith("cuda"):
        batch_why = why_batch
    else:
        batch_why = f"as many patches as fit, {why_batch}" + (
            " (3D on a CPU: the lever study's batch 2 beat batch 4 in a fixed budget, 0.868 / 0.846 vs "
            "0.856 / 0.841 Dice)"
            if kind == "3d"
            else ""
        )
    out.append(Decision("training.batch_size", fit.batch, batch_why, f"patch {list(t.patch)}"))
    return out


def tp_fmt(values: list[float]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)


def _fit(
    fp: dict,
    kind: str,
    spacing: list[float],
    median: list[float],
    device: str,
    limit_gb: float,
    time_of: Callable[[tp.Topology, int], float],
    budget_s: float,
    n_in: int,
    n_cls: int,
) -> tuple[tp.Fit, str]:
    cuda = device.startswith("cuda")
    dims = len(spacing)
    cap = 320 if dims == 3 else 512
    start = tp.initial_patch(median, spacing, tp.INITIAL_PATCH_VOXELS[dims])
    fit = tp.Fit(tp.make_topology(start, spacing, 32 if cuda else 16, cap), 2)
    fit = tp.fit_memory(fit, limit_gb * 2**30, median, spacing, cap, n_in, n_cls, cuda)
    if dims == 2 or not cuda:
        n_vox = fp["summary"]["n_cases"] * math.prod(_resampled_median(fp, None))
        fit.batch, why = tp.batch_size(fit.topo, limit_gb * 2**30, n_vox, device, n_in, n_cls, cuda)
    else:
        why = "2 for 3D on a GPU (nnU-Net's default; the patch grew to the memory instead)"

    def estimate(topo: tp.Topology, batch: int) -> float:
        return tp.fallback_step_seconds(topo, n_in, n_cls, batch, device)

    fit = tp.fit_steps(
        fit, time_of, estimate, TRAIN_SHARE * budget_s, MIN_STEPS, median, spacing, cap, 16 if cuda else 8
    )
    return fit, why


def _plan_one(
    fp: dict,
    kind: str,
    dims: tuple[str, str],
    budget: float,
    device: str,
    limit_gb: float,
    step_seconds: Callable[[dict], float] | None,
    manifest: str,
    folds: int = 5,
    round_trip: RoundTrip | None = None,
    coarse: Decision | None = None,
) -> PlanResult:
    """One configuration (``kind`` 3d or 2d) of the plan (``coarse``: its target spacing decided
    by :mod:`.resolution`, when the budget is too small for the full resolution)."""
    summary = fp["summary"]
    s_ax = slice_axis(fp) if kind == "2d" else None
    decisions = _common(fp, kind, manifest, budget, device, folds)
    decisions += _preprocessing(fp, s_ax, round_trip, coarse)
    full_target = _full_target(next(d.value for d in decisions if d.key == "preprocessing.target_spacing"))
    decisions.append(Decision("model.name", "unet", _UNET_WHY, ""))
    decisions.append(Decision("model.spatial_dims", 3 if kind == "3d" else 2, dims[0], dims[1]))
    patch_axes = [a for a in range(3) if a != s_ax]
    median_full = _resampled_median(fp, full_target)
    median = [median_full[a] for a in patch_axes]
    spacing = [float(full_target[a] if full_target else summary["median_spacing"][a]) for a in patch_axes]
    n_in = max(1, len(fp["dataset"].get("channels") or summary["channels"]))
    n_cls = max(int(k) for k in (fp["dataset"].get("labels") or {"0": 0, "1": 1})) + 1

    def time_of(topo: tp.Topology, batch: int) -> float:
        if step_seconds is None:
            return tp.fallback_step_seconds(topo, n_in, n_cls, batch, device)
        trial = _Trial(topo, batch, kind, device)
        return float(step_seconds(build_config(decisions + trial.decisions())))

    fit, why_batch = _fit(fp, kind, spacing, median, device, limit_gb, time_of, budget * 60, n_in, n_cls)
    passes = rs.training_passes(fp, fit, median_full)
    withdrawn = full_target is None and not _one_spacing(fp)  # too small structures to resample
    if coarse is None and round_trip is not None and passes < rs.MIN_PASSES and not withdrawn:
        target = rs.coarser_target(fp, full_target, median_full, patch_axes, 2 if s_ax == 2 else None)
        measured = round_trip(target) if target is not None else None
        if target is not None and measured is not None and rs.coarse_enough(measured):
            decision = rs.coarse_decision(target, s_ax, passes, measured)
            args = (fp, kind, dims, budget, device, limit_gb, step_seconds, manifest, folds, round_trip)
            return _plan_one(*args, coarse=decision)
    mem = tp.training_memory_bytes(fit.topo, fit.batch, n_in, n_cls, device.startswith("cuda")) / 2**30
    net = _network_decisions(fit, kind, device, median, limit_gb, why_batch, mem, step_seconds is not None)
    net = [  # the passes the budget gives join the patch size's evidence
        replace(d, evidence=f"{d.evidence}; about {passes:.0f} passes over the training voxels")
        if d.key == "training.patch_size"
        else d
        for d in net
    ]
    decisions += net
    patch_vol = mm3(list(fit.topo.patch), spacing)
    decisions += [
        Decision(
            "loss.name",
            "dice_focal",
            "Dice + focal, the shipped recipes' loss (hippocampus 0.897 / 0.881)",
            "",
        ),
        class_weighting(fp),
        *mirror_axes(fp, kind, s_ax),
        *channel_substitution(fp),
        foreground_oversample(fp, patch_vol, s_ax),
        foreground_sampling(fp, patch_vol, s_ax),
        *schedule(budget, fit, val_pass_seconds(fp, fit, median_full, patch_axes), device),
        Decision("inference.overlap", 0.5, "sliding windows overlapping by half (nnU-Net)", ""),
        Decision(
            "training.choose_postprocessing",
            True,
            "after training, keeping the largest component or dropping small ones is chosen per class "
            "on the validation cases, and medseg predict applies it (nnU-Net chooses it on out-of-fold "
            "predictions; --folds all does that)",
            "",
        ),
    ]
    warnings = dataset_warnings(fp, folds) + fit.warnings
    warnings += smaller_than_patch(fp, full_target, patch_axes, list(fit.topo.patch))
    decisions = sorted_decisions(decisions)
    return PlanResult(build_config(decisions), decisions, warnings, kind)


class _Trial:
    """The network decisions of a candidate topology (for the step-time probe)."""

    def __init__(self, topo: tp.Topology, batch: int, kind: str, device: str) -> None:
        self.topo, self.batch, self.kind, self.device = topo, batch, kind, device

    def decisions(self) -> list[Decision]:
        params = self.topo.unet_params()
        out = [
            Decision("model.name", "unet", "", ""),
            Decision("model.params", params, "", ""),
            Decision("training.patch_size", list(self.topo.patch), "", ""),
            Decision("training.batch_size", self.batch, "", ""),
            Decision("loss.name", "dice_focal", "", ""),
        ]
        if not self.device.startswith("cuda"):
            out.append(Decision("training.cpu_bf16", True, "", ""))
        return out


def _measured_once(round_trip: RoundTrip) -> RoundTrip:
    """``round_trip`` measured once per target (both configurations ask for the same one)."""
    seen: dict[tuple, dict] = {}

    def measured(target: list) -> dict:
        if tuple(target) not in seen:
            seen[tuple(target)] = round_trip(target)
        return seen[tuple(target)]

    return measured


def _one_spacing(fp: dict) -> bool:
    """The 10th and 90th percentile spacings agree: (nearly) every case has one spacing, so there is
    nothing to resample and nothing to measure (the rule ``target_spacing_2d`` uses too)."""
    return bool(np.allclose(fp["summary"]["spacing_p10"], fp["summary"]["spacing_p90"]))


def _full_target(value: Any) -> list[float | None] | None:
    """The target spacing as 3 values (None: an axis kept)."""
    if value is None:
        return None
    if len(value) == 2:
        return [float(value[0]), float(value[1]), None]
    return [float(v) for v in value]


def _preprocessing(
    fp: dict, s_ax: int | None, round_trip: RoundTrip | None = None, coarse: Decision | None = None
) -> list[Decision]:
    """Target spacing (withdrawn when resampling costs the labels too much; ``coarse`` when the
    budget asks for a coarser grid), normalisation, cropping (and the slice axis of a 2D model),
    in this order."""
    summary = fp["summary"]
    spacing3 = target_spacing_3d(fp)
    if round_trip is not None and spacing3.value is not None and not _one_spacing(fp):
        spacing3 = resampling_fidelity(spacing3, round_trip(spacing3.value))
    two_d_data = bool(summary["is_2d"])
    kept = spacing3.value is None and not _one_spacing(fp)  # resampling withdrawn: 2D keeps grids too
    if coarse is not None:
        spacing = coarse
    else:
        spacing = spacing3 if s_ax is None or kept else target_spacing_2d(fp, s_ax, spacing3.value)
    out = [
        spacing,
        normalization(fp),
        Decision(
            "preprocessing.crop_foreground",
            not two_d_data,
            "pictures fill their frame: no cropping"
            if two_d_data
            else "crop to the non-zero region (nnU-Net)",
            "",
        ),
    ]
    if s_ax is not None:
        why = "2D slices along the size-1 axis" if two_d_data else "2D slices across the coarsest axis"
        out.append(
            Decision("preprocessing.slice_axis", s_ax, why, f"median shape {tp_fmt(summary['median_shape'])}")
        )
    return out


def plan_pipeline(
    fingerprint: dict,
    budget_minutes: float,
    device: str = "cpu",
    memory_gb: float | None = None,
    step_seconds: Callable[[dict], float] | None = None,
    manifest_path: str | None = None,
    folds: int = 5,
    round_trip: RoundTrip | None = None,
) -> PlanResult:
    """Plan a pipeline for the dataset a fingerprint describes, fitted to a time budget.

    Args:
        fingerprint: ``fingerprint.json`` as a dict (see the fingerprint contract; axes in RAS,
            lengths in mm).
        budget_minutes: Training budget in minutes (``training.max_minutes``).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``): width, memory and precision defaults.
        memory_gb: Memory limit for one training step, GB (default: :func:`default_memory_gb`).
        step_seconds: Seconds per training step of a candidate pipeline dict on the real device,
            e.g. ``lambda c: probe_step_seconds(c, device)``; default: a FLOPs estimate.
        manifest_path: ``data.manifest`` (default: the fingerprint's ``source``).
        folds: Cross-validation folds (``data.folds``; fewer labelled cases lower it, with a warning).
        round_trip: What resampling the labels to a target spacing and back keeps, e.g.
            ``lambda t: label_round_trip(manifest, t)``
            (:func:`~medseg.planning.round_trip.label_round_trip`); default: not measured.

    Returns:
        The primary configuration; for strongly anisotropic 3D data (anisotropy over 3) also the
        2D one in ``alternatives``, and for flat volumes with no recorded voxel size a 2D primary
        with the 3D one there (cross-validation picks, as in nnU-Net).

    Raises:
        ConfigError: a fingerprint without its sections, a budget <= 0 or an unknown device.
    """
    _check(fingerprint, budget_minutes, device)
    kinds, why, evidence = dimensionality(fingerprint)
    limit = float(memory_gb) if memory_gb else default_memory_gb(device)
    manifest = manifest_path or str(fingerprint.get("source") or "")
    if not manifest:
        raise ConfigError("no manifest path: the fingerprint has no source", hint="pass manifest_path")
    measured = _measured_once(round_trip) if round_trip is not None else None
    results = [
        _plan_one(
            fingerprint,
            k,
            (why, evidence),
            budget_minutes,
            device,
            limit,
            step_seconds,
            manifest,
            folds,
            measured,
        )
        for k in kinds
    ]
    primary = results[0]
    primary.alternatives = results[1:]
    return primary
