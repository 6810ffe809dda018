"""The "Lesions" section of the HTML report (evaluations made with ``medseg evaluate --lesions``).

Reads ``summary["lesions"]`` (see :mod:`medseg.evaluation.lesion_results`) and shows, per
class: the BraTS 2023 lesion-wise Dice and HD95, lesion detection per IoU threshold
(sensitivity, precision, F1, false positives per case), the sensitivity per lesion-size band,
the FROC curve when probability maps were given, and the per-case lesion results of metrics.csv.
Evaluations made with ``--lesions --regions`` show the regions (``summary["regions"][name]["lesions"]``,
:mod:`medseg.evaluation.region_lesions`) as further rows of the same tables, named after the regions
(``whole_tumor {1, 2, 4}``); the FROC stays per class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from medseg.errors import MedsegError
from medseg.evaluation.results import EvaluationResult
from medseg.reporting.html import Cell, esc, img_tag, number_cell, stats_cell, table

log = logging.getLogger(__name__)

__all__ = ["froc_png", "lesion_section"]


def _count(value: Any) -> Cell:
    return Cell(str(int(value)), str(int(value)))


def _units(result: EvaluationResult) -> tuple[str, str]:
    """``(distance unit, lesion volume unit)``: mm and mm³ in 3D, mm² (px²) for 2D label maps."""
    unit = str(result.settings.get("distance_unit", "mm"))
    if result.settings.get("spatial_dims", 3) == 3:
        return unit, "mm³"
    return unit, "px²" if unit == "px" else "mm²"


def _scores_table(classes: Sequence[tuple[str, Mapping[str, Any]]], unit: str, key: str = "class") -> str:
    header = [key, "cases", "lesions", "predicted components", "false positives per case"]
    header += ["lesion-wise Dice", f"lesion-wise HD95 ({unit})"]
    rows = []
    for title, s in classes:
        rows.append(
            [
                title,
                _count(s["n_cases"]),
                _count(s["n_ref_lesions"]),
                _count(s["n_pred_lesions"]),
                number_cell(s["fp_per_case"], 2),
                stats_cell(s["lesion_dice"], 3),
                stats_cell(s["lesion_hd95"], 2),
            ]
        )
    return table(header, rows)


def _detection_table(classes: Sequence[tuple[str, Mapping[str, Any]]], key: str = "class") -> str:
    header = [key, "IoU >", "lesions", "detected", "sensitivity", "predicted", "true positive"]
    header += ["precision", "F1", "false positives per case"]
    rows = []
    for title, s in classes:
        for d in s["detection"]:
            rows.append(
                [
                    title,
                    Cell(f"{d['threshold']:g}", repr(float(d["threshold"]))),
                    _count(d["n_ref"]),
                    _count(d["n_detected"]),
                    number_cell(d["sensitivity"], 3),
                    _count(d["n_pred"]),
                    _count(d["n_pred_true"]),
                    number_cell(d["precision"], 3),
                    number_cell(d["f1"], 3),
                    number_cell(d["fp_per_case"], 2),
                ]
            )
    return table(header, rows)


def _strata_table(
    classes: Sequence[tuple[str, Mapping[str, Any]]], volume_unit: str, key: str = "class"
) -> str:
    thresholds = sorted({float(st["threshold"]) for _, s in classes for st in s["strata"]})
    header = [key, f"lesion volume ({volume_unit})", "lesions"]
    header += [f"sensitivity @IoU>{t:g}" for t in thresholds]
    rows = []
    for title, s in classes:
        bands: dict[str, dict[float, Mapping[str, Any]]] = {}
        for st in s["strata"]:
            bands.setdefault(st["band"], {})[float(st["threshold"])] = st
        for band, by_t in bands.items():
            cells: list[Cell | str] = [title, band, _count(next(iter(by_t.values()))["n_ref"])]
            for t in thresholds:
                st = by_t.get(t)
                if st is None or st["sensitivity"] is None:
                    cells.append(Cell("n/a", "nan"))
                    continue
                text = f"{st['sensitivity']:.3f} <small>({st['n_detected']}/{st['n_ref']})</small>"
                cells.append(Cell(text, repr(float(st["sensitivity"]))))
            rows.append(cells)
    return table(header, rows)


def _rate_label(rate: float) -> str:
    return f"{rate:g}" if rate >= 1 or rate <= 0 else f"1/{1 / rate:g}"


def froc_png(curves: Sequence[tuple[str, Mapping[str, Any]]]) -> bytes:
    """FROC curves as PNG: per class the sensitivity at the rates of the score (markers joined by
    lines, log₂ axis of false positives per case) and the operating points (light dots).

    Args:
        curves: ``(class name, FrocResult.to_dict())`` pairs.
    """
    from medseg.reporting.figures import figure_png, new_figure

    fig = new_figure(7.6, 4.2, dpi=100)
    ax = fig.add_axes((0.09, 0.13, 0.56, 0.78))
    rates: list[float] = []
    for n, (name, f) in enumerate(curves):
        color = f"C{n % 10}"
        rates = [float(r) for r in f["fp_rates"]]
        sens = [math.nan if v is None else float(v) for v in f["sensitivities"]]
        score = "n/a" if f.get("score") is None else f"{f['score']:.3f}"
        ax.plot(rates, sens, marker="o", color=color, lw=1.6, label=f"{name}: FROC {score}")
        points = [
            (p["fp_per_case"], p["sensitivity"])
            for p in f["points"]
            if p["sensitivity"] is not None and p["fp_per_case"] > 0
        ]
        if points:
            ax.scatter(*zip(*points), s=10, color=color, alpha=0.35, zorder=1)
    ax.set_xscale("log", base=2)
    positive = [r for r in rates if r > 0] or [1.0]
    ax.set_xlim(min(positive) / 2, max(positive) * 2)
    ax.set_xticks(positive)
    ax.set_xticklabels([_rate_label(r) for r in positive])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per case")
    ax.set_ylabel("lesion sensitivity")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=9, frameon=False)
    return figure_png(fig)


def _froc_part(classes: Sequence[tuple[str, Mapping[str, Any]]], threshold: Any) -> str:
    curves = [(title, s["froc"]) for title, s in classes if s.get("froc")]
    if not curves:
        return ""
    rates = [float(r) for r in curves[0][1]["fp_rates"]]
    header = ["class", "lesions", "FROC score"] + [f"@{_rate_label(r)} FP" for r in rates]
    rows = [
        [title, _count(f["n_lesions"]), number_cell(f["score"], 3)]
        + [number_cell(v, 3) for v in f["sensitivities"]]
        for title, f in curves
    ]
    at = f" extracted at probability ≥ {float(threshold):g}" if threshold is not None else ""
    caption = (
        f"FROC from the probability maps: candidates are the components of the map{at}, scored by their "
        "maximum; sensitivity against false positives per case. Markers: the sensitivities the FROC score "
        "averages (LUNA16); dots: the operating points."
    )
    figure = img_tag(froc_png(curves), "FROC curves")
    return (
        "<h3>FROC</h3>"
        + table(header, rows)
        + f"<figure>{figure}<figcaption>{esc(caption)}</figcaption></figure>"
    )


_COUNTS = ("n_ref_lesions", "n_pred_lesions", "n_fp")


def _case_row(case: str, title: str, v: Mapping[str, float], f1: Sequence[str]) -> list[Cell | str]:
    """One row of the per-case lesion table (missing values as NaN)."""
    cells: list[Cell | str] = [case, title]
    cells += [number_cell(v.get("lesion_dice", math.nan)), number_cell(v.get("lesion_hd95", math.nan), 2)]
    cells += [number_cell(v.get(c, math.nan), 0) for c in _COUNTS]
    cells += [number_cell(v.get(c, math.nan), 3) for c in f1]
    return cells


def _cases_table(result: EvaluationResult, unit: str, regions: Sequence[tuple[str, str]] = ()) -> str:
    """Per-case lesion results from the evaluation folder's metrics.csv (nothing without it): the
    rows of each case's classes, then those of its ``regions`` (``(name, title)`` pairs)."""
    from medseg.evaluation.lesion_results import read_lesion_values
    from medseg.evaluation.region_lesions import read_region_lesion_values

    if result.output is None:
        return ""
    try:
        values = read_lesion_values(result.output)
        region_values = read_region_lesion_values(result.output) if regions else {}
    except MedsegError as exc:
        log.warning("no per-case lesion table: %s", exc)
        return ""
    f1 = [c for c in values if c.startswith("lesion_f1@")]
    if not all(c in values for c in ("lesion_dice", "lesion_hd95", *_COUNTS)):
        return ""
    header = ["case", "class" if not regions else "class / region", "lesion-wise Dice"]
    header += [f"lesion-wise HD95 ({unit})", "lesions", "predicted", "false positives"]
    header += [f"F1 @IoU>{c.split('@', 1)[1]}" for c in f1]
    per_case: dict[str, list[list[Cell | str]]] = {}
    for r in result.rows:
        v = {c: values[c].get((r.case, r.class_id), math.nan) for c in values}
        per_case.setdefault(r.case, []).append(_case_row(r.case, r.class_name, v, f1))
    rows = []
    for case, class_rows in per_case.items():
        rows += class_rows
        rows += [
            _case_row(case, t, region_values[case, n], f1) for n, t in regions if (case, n) in region_values
        ]
    return (
        "<h3>Per-case lesion results</h3>"
        + '<div class="scroll">'
        + table(header, rows, sortable=True, table_id="lesion-cases")
        + "</div>"
    )


def _settings_note(s: Mapping[str, Any], connectivity: str, unit: str, volume_unit: str) -> str:
    """How lesions were found, matched and counted, in one paragraph."""
    text = (
        f"Lesions are the connected components ({connectivity}-connectivity) of each class; reference "
        f"components whose {s['dilation']}-voxel dilations touch form one lesion, and lesions of at most "
        f"{s['min_volume']:g} {volume_unit} are left out. Lesion-wise Dice and HD95 follow BraTS 2023: a "
        f"missed lesion or a false positive component scores Dice 0 and HD95 {s['max_hd95_mm']:g} {unit}. "
        "A lesion is detected when the IoU with its matched components exceeds the threshold; detection "
        "counts are pooled over cases."
    )
    return f'<p class="meta">{esc(text)}</p>'


def _region_entries(result: EvaluationResult) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(name, title, pooled lesion results)`` of each region with lesion results, in the order of
    ``summary["regions"]`` (the declared order)."""
    from medseg.evaluation.region_lesions import region_title

    regions = result.summary.get("regions") or {}
    return [
        (name, region_title(name, r.get("labels") or []), r["lesions"])
        for name, r in regions.items()
        if isinstance(r, Mapping) and r.get("lesions")
    ]


def lesion_section(result: EvaluationResult) -> str:
    """HTML of the lesion-wise results of an evaluation ("" when it has none)."""
    lesions = result.summary.get("lesions")
    if not lesions:
        return ""
    classes = [
        (f"{name} ({cid})", lesions[str(cid)]) for cid, name in result.labels.items() if str(cid) in lesions
    ]
    if not classes:
        return ""
    regions = _region_entries(result)
    key = "class / region" if regions else "class"
    entries = classes + [(title, s) for _, title, s in regions]
    unit, volume_unit = _units(result)
    s = classes[0][1]["settings"]
    lesion_settings = result.settings.get("lesions") or {}
    connectivity = str(s.get("connectivity") or ("26" if volume_unit == "mm³" else "8"))
    parts = [
        "<h2>Lesions</h2>",
        _settings_note(s, connectivity, unit, volume_unit),
        "<h3>Lesion-wise Dice and HD95 (BraTS 2023, mean ± sample sd over cases)</h3>",
        _scores_table(entries, unit, key),
        "<h3>Detection</h3>",
        _detection_table(entries, key),
        "<h3>Sensitivity by lesion size</h3>",
        _strata_table(entries, volume_unit, key),
        _froc_part(classes, lesion_settings.get("froc_threshold")),
        _cases_table(result, unit, [(name, title) for name, title, _ in regions]),
    ]
    return "".join(parts)
