"""Synthetic fingerprints that follow the fingerprint contract (``fingerprint.json``), for the
planning-rule tests: every case and the dataset summary, computed from a few parameters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

CHANNEL_STATS = {
    "ct": {
        "p00_5": -1000.0,
        "p99_5": 1500.0,
        "mean": 40.0,
        "std": 300.0,
        "min": -1024.0,
        "max": 3071.0,
        "integer_valued": True,
    },
    "mr": {
        "p00_5": 10.0,
        "p99_5": 900.0,
        "mean": 300.0,
        "std": 150.0,
        "min": 0.0,
        "max": 1800.5,
        "integer_valued": False,
    },
    "8bit": {
        "p00_5": 5.0,
        "p99_5": 250.0,
        "mean": 120.0,
        "std": 50.0,
        "min": 0.0,
        "max": 255.0,
        "integer_valued": True,
    },
    "other": {
        "p00_5": -3.0,
        "p99_5": 3.0,
        "mean": 0.0,
        "std": 1.0,
        "min": -5.5,
        "max": 5.5,
        "integer_valued": False,
    },
}


def make_fingerprint(
    *,
    name: str = "synth",
    modality: str | None = "MR",
    channels: Sequence[tuple[str, str]] = (("image", "mr"),),
    classes: dict[str, dict[str, Any]] | None = None,
    n_cases: int = 20,
    shape: Sequence[int] = (64, 64, 64),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    spacings: Sequence[Sequence[float]] | None = None,
    seed: int = 0,
    source: str = "/data/synth/dataset.json",
    spacing_declared: bool = True,
) -> dict[str, Any]:
    """A fingerprint of ``n_cases`` cases of ``shape`` voxels at ``spacing`` mm (or per-case
    ``spacings``).

    ``classes``: ``{"1": {"name", "volume_mm3", "components", "centroid"}}``, where ``centroid`` is a
    fixed ``[x, y, z]`` (jittered by +-0.03 per case) or a callable ``case index -> [x, y, z]``.
    """
    rng = np.random.default_rng(seed)
    classes = classes or {
        "1": {"name": "organ", "volume_mm3": 5000.0, "components": 1, "centroid": [0.5] * 3}
    }
    is_2d = 1 in shape
    cases = []
    for i in range(n_cases):
        sp = [float(v) for v in (spacings[i % len(spacings)] if spacings else spacing)]
        cls = {}
        for k, c in classes.items():
            cen = (
                c["centroid"](i)
                if callable(c["centroid"])
                else np.clip(np.array(c["centroid"], float) + rng.uniform(-0.03, 0.03, 3), 0, 1)
            )
            vol = float(c["volume_mm3"])
            side = vol ** (1 / 3)
            cls[k] = {
                "voxels": int(vol / np.prod(sp)),
                "volume_mm3": vol,
                "components": int(c.get("components", 1)),
                "centroid_rel": [float(v) for v in cen],
                "extent_mm": [side if shape[a] > 1 else sp[a] for a in range(3)],
            }
        cases.append(
            {
                "id": f"case_{i:03d}",
                "shape": list(shape),
                "spacing": sp,
                "spacing_declared": spacing_declared,
                "orientation": "RAS",
                "label_grid_agrees": True,
                "channel_grids_agree": True,
                "is_2d": is_2d,
                "channels": [dict(CHANNEL_STATS[kind], foreground=True) for _, kind in channels],
                "classes": cls,
                "foreground_bbox_vox": [[0, s] for s in shape],
            }
        )
    return {
        "version": 1,
        "source": source,
        "dataset": {
            "name": name,
            "modality": modality,
            "channels": [n for n, _ in channels],
            "labels": {"0": "background", **{k: c["name"] for k, c in classes.items()}},
            "n_cases": n_cases,
            "n_labelled": n_cases,
            "is_2d": is_2d,
        },
        "cases": cases,
        "summary": _summary(cases, channels, classes, is_2d),
        "seconds": 0.1,
    }


def _summary(cases: list[dict], channels, classes, is_2d: bool) -> dict[str, Any]:
    shapes = np.array([c["shape"] for c in cases], float)
    sps = np.array([c["spacing"] for c in cases], float)
    med_sp = np.median(sps, 0)
    med_shape = np.median(shapes, 0)
    real = [a for a in range(3) if med_shape[a] > 1]
    total = sum(c["classes"][k]["voxels"] for c in cases for k in c["classes"])
    summ_cls = {}
    for k, c in classes.items():
        rows = [case["classes"][k] for case in cases if k in case["classes"]]
        cen = np.array([r["centroid_rel"] for r in rows])
        summ_cls[k] = {
            "name": c["name"],
            "cases_present": len(rows),
            "voxels_total": sum(r["voxels"] for r in rows),
            "frequency": sum(r["voxels"] for r in rows) / total,
            "median_volume_mm3": float(np.median([r["volume_mm3"] for r in rows])),
            "median_components": float(np.median([r["components"] for r in rows])),
            "centroid_rel_median": np.median(cen, 0).tolist(),
            "centroid_rel_min": cen.min(0).tolist(),
            "centroid_rel_max": cen.max(0).tolist(),
        }
    return {
        "n_cases": len(cases),
        "is_2d": is_2d,
        "median_shape": med_shape.tolist(),
        "median_spacing": med_sp.tolist(),
        "spacing_p10": np.percentile(sps, 10, 0).tolist(),
        "spacing_p90": np.percentile(sps, 90, 0).tolist(),
        "anisotropy": float(med_sp[real].max() / med_sp[real].min()),
        "median_shape_after_resampling": np.median(shapes * sps / med_sp, 0).tolist(),
        "spacing_undeclared_cases": sum(1 for c in cases if not c["spacing_declared"]),
        "channels": [dict(CHANNEL_STATS[kind], name=n, looks_like=kind) for n, kind in channels],
        "classes": summ_cls,
        "problems": [],
    }


def side(left: float, right: float, share_left: float) -> Callable[[int], list[float]]:
    """Centroids alternating between two x positions: a share ``share_left`` of the cases at ``left``."""

    def f(i: int) -> list[float]:
        return [left if (i % 10) < round(10 * share_left) else right, 0.5, 0.5]

    return f
