"""The tumour sections of docs/benchmarks.md (used by ``benchmarks/render.py``).

Results read (all from ``train_tumour.py``): ``lgg_dropout_off`` and ``lgg_dropout_on`` (channel
dropout), ``lgg_lesion_sampling`` and ``lgg_blob`` (the small-lesion levers, against
``lgg_dropout_off``), ``brats_regions`` and ``brats_labels`` (region-based against exclusive labels).
"""

from __future__ import annotations

from typing import Any

R = dict[str, dict[str, Any]]

#: LGG runs, in table order: (result key, what differs from the recipe).
LGG_RUNS = [
    ("lgg_dropout_off", "recipe (channel dropout off)"),
    ("lgg_dropout_on", "channel dropout p = 0.3"),
    ("lgg_lesion_sampling", "lesion-weighted sampling"),
    ("lgg_blob", "blob loss term (weight 1)"),
]
BRATS_RUNS = [
    ("brats_labels", "exclusive labels, softmax, Dice + CE"),
    ("brats_regions", "regions, sigmoid, Dice + BCE"),
]
REGIONS = ["whole_tumor", "tumor_core", "enhancing_tumor"]


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ms(stats: dict[str, Any] | None, digits: int = 3) -> str:
    """mean ± sd of a ``describe`` dict."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    sd = stats.get("std")
    return f"{stats['mean']:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def _scores(test: dict[str, Any]) -> list[str]:
    """Voxel Dice, lesion-wise Dice, F1 at IoU > 0.1, FP per case, sensitivity at IoU > 0.1."""
    name, lesion = next(iter(test["lesions"].items()))
    det = next((d for d in lesion["detection"] if abs(d["threshold"] - 0.1) < 1e-9), lesion["detection"][0])
    return [
        _ms(test["dice"][name]),
        _ms(lesion["lesion_dice"]),
        _f(det["f1"]),
        _f(det["sensitivity"]),
        _f(lesion["fp_per_case"], 2),
    ]


def lgg(r: R) -> str:
    """Table of the LGG runs: raw predictions, keep-largest, and post-contrast missing."""
    rows = []
    for key, what in LGG_RUNS:
        x = r.get(key)
        if not x:
            continue
        cells = [what, f"{x['steps_done']} / {_f(x['train_minutes'], 1)}"]
        cells += _scores(x["test"])
        kept = x.get("test_keep_largest")
        cells += [_scores(kept)[i] for i in (1, 2, 4)] if kept else ["n/a"] * 3
        missing = x.get("test_missing")
        cells += _scores(missing)[:2] if missing else ["n/a", "n/a"]
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return "Not measured yet.\n"
    base = r.get("lgg_dropout_off") or {}
    lesions = next(iter(base.get("test", {}).get("lesions", {}).values()), {})
    header = (
        "| run | steps / min | voxel Dice | lesion-wise Dice | detection F1 | sensitivity | FP per case "
        "| keep largest: lesion-wise Dice | keep largest: F1 | keep largest: FP per case "
        "| post-contrast missing: voxel Dice | post-contrast missing: lesion-wise Dice |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    note = (
        f"\n{base.get('test', {}).get('cases', 'n/a')} test patients, {lesions.get('n_ref_lesions', 'n/a')} "
        "reference lesions (3D connected components). Dice: mean ± sd over the test patients. Detection: a "
        "reference lesion counts as found when a predicted lesion overlaps it with IoU > 0.1; F1 and "
        "sensitivity pooled over the cases. Lesion-wise Dice: BraTS 2023 (reference dilated to match, "
        'unmatched predictions score 0). "Keep largest": the same predictions with only the largest '
        "component kept (`medseg predict --keep-largest`; a rule fixed in advance for single-lesion data, "
        'not tuned on these cases). "Post-contrast missing": the same model on the same cases with the '
        "post-contrast channel set to zero after normalisation (`medseg predict --missing-channel zeros`).\n"
    )
    return header + "\n".join(rows) + "\n" + note


def brats(r: R) -> str:
    """Table of per-region Dice of the region-based and the exclusive-label model."""
    rows = []
    for key, what in BRATS_RUNS:
        x = r.get(key)
        if not x:
            continue
        regions = x["test"].get("regions") or {}
        cells = [what, f"{x['steps_done']} / {_f(x['train_minutes'], 1)}"]
        for name in REGIONS:
            d = (regions.get(name) or {}).get("metrics", {}).get("dice")
            ok = d and d.get("mean") is not None
            cells.append(f"{d['mean']:.3f} ({d['min']:.3f}, {d['max']:.3f})" if ok else "n/a")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return "Not measured yet.\n"
    header = (
        "| training | steps / min | whole tumour Dice | tumour core Dice | enhancing tumour Dice |\n"
        "|---|---|---|---|---|\n"
    )
    return header + "\n".join(rows) + "\n\nMean over the 2 test cases (the two cases in brackets).\n"
