"""Dataset-level summaries of the fingerprint: geometry, pooled intensities, classes, problems.

Pooled intensity statistics follow nnU-Net (Isensee et al., Nature Methods 2021): percentiles,
mean and standard deviation of the foreground voxels sampled from every case (at most
:data:`medseg.planning.case_stats.SAMPLE_PER_CASE` per case), min/max over every case's foreground.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

#: Case ids named per problem before "and N more".
_MAX_NAMED = 10
#: Words of a declared modality/channel name that mean MR (the sequence names of MSD/BraTS).
_MR_WORDS = {"MR", "MRI", "FLAIR", "T1", "T1W", "T1GD", "T1CE", "T1C", "T2", "T2W", "ADC", "DWI", "PD", "T2F"}


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:_MAX_NAMED])
    return shown + (f" and {len(ids) - _MAX_NAMED} more" if len(ids) > _MAX_NAMED else "")


def channel_modality(manifest: Any, index: int) -> str | None:
    """The declared modality of channel ``index``: the manifest's ``modality`` when set (it
    holds for every channel), else the channel's name (MSD names channels by modality)."""
    return manifest.modality or manifest.channels[index]


def looks_like(modality: str | None, pooled: dict[str, Any]) -> str:
    """``ct`` when the modality says CT, or the foreground's 0.5 percentile is below -200 on
    integer values; ``8bit`` for integer values within 0..255 (whole images); ``mr`` when the
    modality says MR (or names an MR sequence); else ``other``."""
    words = set(re.split(r"[^A-Z0-9]+", (modality or "").upper())) - {""}
    if "CT" in words or (pooled["p00_5"] < -200 and pooled["integer_valued"]):
        return "ct"
    if pooled["integer_valued"] and pooled["image_min"] >= 0 and pooled["image_max"] <= 255:
        return "8bit"
    if words & _MR_WORDS:
        return "mr"
    return "other"


def _pooled_channel(manifest: Any, c: int, records: list[dict], samples: list[list[np.ndarray]]) -> dict:
    stats = [r["channels"][c] for r in records]
    fg = [i for i, s in enumerate(stats) if s["foreground"]]
    use = fg or list(range(len(records)))  # no foreground anywhere: whole images
    pool = np.concatenate([samples[i][c].astype(np.float64) for i in use])
    lo, hi = np.percentile(pool, [0.5, 99.5])
    pooled = {
        "name": manifest.channels[c],
        "modality": channel_modality(manifest, c),
        "p00_5": float(lo),
        "p99_5": float(hi),
        "mean": float(pool.mean()),
        "std": float(pool.std()),
        "min": min(stats[i]["min"] for i in use),
        "max": max(stats[i]["max"] for i in use),
        "integer_valued": all(s["integer_valued"] for s in stats),
        "foreground": bool(fg),
        "n_sampled": int(pool.size),
        "image_min": min(s["image_min"] for s in stats),
        "image_max": max(s["image_max"] for s in stats),
    }
    pooled["looks_like"] = looks_like(pooled["modality"], pooled)
    return pooled


def _classes(manifest: Any, records: list[dict]) -> dict[str, dict[str, Any]]:
    totals = {k: sum(r["classes"].get(str(k), {}).get("voxels", 0) for r in records) for k in manifest.labels}
    all_fg = sum(v for k, v in totals.items() if k != 0)
    out: dict[str, dict[str, Any]] = {}
    for k, name in sorted(manifest.labels.items()):
        if k == 0:
            continue
        present = [r["classes"][str(k)] for r in records if str(k) in r["classes"]]
        cent = np.array([p["centroid_rel"] for p in present]) if present else None
        out[str(k)] = {
            "name": name,
            "cases_present": len(present),
            "voxels_total": int(totals[k]),
            "frequency": float(totals[k] / all_fg) if all_fg else 0.0,
            "median_volume_mm3": float(np.median([p["volume_mm3"] for p in present])) if present else 0.0,
            "median_components": float(np.median([p["components"] for p in present])) if present else 0.0,
            "centroid_rel_median": np.median(cent, axis=0).tolist() if cent is not None else None,
            "centroid_rel_min": cent.min(axis=0).tolist() if cent is not None else None,
            "centroid_rel_max": cent.max(axis=0).tolist() if cent is not None else None,
        }
    return out


def _problems(manifest: Any, records: list[dict], classes: dict[str, dict]) -> list[str]:
    problems = []
    bad_label = [r["id"] for r in records if not r["label_grid_agrees"]]
    if bad_label:
        problems.append(
            f"label grid disagrees with the image grid in {len(bad_label)} case(s): {_names(bad_label)}"
        )
    non_finite = [r["id"] for r in records if any(c.get("non_finite", 0) for c in r["channels"])]
    if non_finite:
        problems.append(f"NaN or infinite intensities in {len(non_finite)} case(s): {_names(non_finite)}")
    bad_channels = [r["id"] for r in records if not r["channel_grids_agree"]]
    if bad_channels:
        problems.append(f"channels differ in grid in {len(bad_channels)} case(s): {_names(bad_channels)}")
    if any(r["has_label"] for r in records):
        for k, c in classes.items():
            if c["voxels_total"] == 0:
                problems.append(f"class {k} ({c['name']}) has no voxels in any case")
    known = {str(k) for k in manifest.labels}
    unknown: dict[str, set[str]] = {}
    for r in records:
        extra = sorted(set(r["classes"]) - known, key=int)
        if extra:
            unknown[r["id"]] = set(extra)
    if unknown:
        values = sorted(set().union(*unknown.values()), key=int)
        listed = ", ".join(sorted(known, key=int))
        problems.append(
            f"label values {', '.join(values)} are not among the labels ({listed}) "
            f"in {len(unknown)} case(s): {_names(sorted(unknown))}"
        )
    return problems


def _substitutions(records: list[dict]) -> list[dict[str, Any]]:
    """How the dataset fills missing channels: one entry per ``(source, replaced)`` pattern among
    the cases' ``channel_copies``, with the cases that show it.

    A group of identical channels does not say which one was acquired. The source is the member
    whose usual foreground mean (the median over the cases without copies whose statistics cover
    a labelled foreground, in units of the larger of its interquartile range and standard deviation
    over them) is nearest the copy's: a FLAIR copy looks like FLAIR."""
    if not any(r.get("channel_copies") for r in records):
        return []

    def foreground(r: dict) -> bool:
        return all(c.get("foreground", False) for c in r["channels"])

    clean = [r for r in records if not r.get("channel_copies") and foreground(r)]
    clean = clean or [r for r in records if not r.get("channel_copies")] or records
    means = np.array([[c["mean"] for c in r["channels"]] for r in clean], dtype=np.float64)
    typical = np.median(means, axis=0)
    q75, q25 = np.percentile(means, [75, 25], axis=0)
    spread = np.maximum(q75 - q25, np.maximum(means.std(axis=0), 1e-6))
    patterns: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for r in records:
        for group in r.get("channel_copies") or []:
            value = float(r["channels"][group[0]]["mean"])
            source = min(group, key=lambda c: abs(value - typical[c]) / spread[c])
            key = (int(source), tuple(int(c) for c in group if c != source))
            patterns.setdefault(key, []).append(r["id"])
    return [
        {"source": src, "replaced": list(rep), "cases": len(ids), "case_ids": ids[:_MAX_NAMED]}
        for (src, rep), ids in sorted(patterns.items())
    ]


def _geometry(records: list[dict]) -> dict[str, Any]:
    shapes = np.array([r["shape"] for r in records], dtype=np.float64)
    spacings = np.array([r["spacing"] for r in records], dtype=np.float64)
    median_shape = np.median(shapes, axis=0)
    median_spacing = np.median(spacings, axis=0)
    axes = [a for a in range(3) if median_shape[a] > 1] or [0, 1, 2]
    resampled = np.where(median_shape > 1, shapes * spacings / median_spacing, shapes)
    return {
        "median_shape": median_shape.tolist(),
        "median_spacing": median_spacing.tolist(),
        "spacing_p10": np.percentile(spacings, 10, axis=0).tolist(),
        "spacing_p90": np.percentile(spacings, 90, axis=0).tolist(),
        "anisotropy": float(median_spacing[axes].max() / median_spacing[axes].min()),
        "median_shape_after_resampling": np.median(resampled, axis=0).tolist(),
        "spacing_undeclared_cases": sum(1 for r in records if not r.get("spacing_declared", True)),
    }


def summarise(manifest: Any, records: list[dict], samples: list[list[np.ndarray]]) -> dict[str, Any]:
    """The fingerprint's ``summary``: geometry (medians, 10th/90th spacing percentiles,
    anisotropy over non-singleton axes, median shape at the median spacing), pooled channel
    statistics with ``looks_like``, channels that some cases fill with copies of another
    (``channel_substitutions``), per-class summaries and ``problems`` (strings, one per kind)."""
    classes = _classes(manifest, records)
    return {
        "n_cases": len(records),
        "is_2d": all(r["is_2d"] for r in records),
        **_geometry(records),
        "channels": [_pooled_channel(manifest, c, records, samples) for c in range(len(manifest.channels))],
        "channel_substitutions": _substitutions(records),
        "classes": classes,
        "problems": _problems(manifest, records, classes),
    }


def dataset_entry(manifest: Any, records: list[dict]) -> dict[str, Any]:
    """The fingerprint's ``dataset``: name, modality, channels, labels, counts, ``is_2d``."""
    return {
        "name": manifest.name,
        "modality": manifest.modality,
        "channels": list(manifest.channels),
        "labels": {str(k): v for k, v in sorted(manifest.labels.items())},
        "n_cases": len(records),
        "n_labelled": sum(1 for r in records if r["has_label"]),
        # folds are made of groups (patients) when the manifest names them
        "n_groups": len({c.group or f"case:{c.id}" for c in manifest.cases if c.label}),
        "is_2d": all(r["is_2d"] for r in records),
    }
