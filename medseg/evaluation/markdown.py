"""Markdown rendering of an evaluation (what ``medseg evaluate`` prints)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from medseg.evaluation.results import EvaluationResult

__all__ = ["evaluation_markdown", "markdown_table", "mean_sd", "miou_notes", "pooled_iou_text"]


def mean_sd(stats: Mapping[str, Any] | None, digits: int = 3, show_nonfinite: bool = True) -> str:
    """``"mean ± sd"`` of a :func:`~medseg.evaluation.summary.describe` dictionary, with the
    number of left-out infinite values, e.g. ``"3.1 ± 0.4 (1 inf)"``."""
    if not stats or stats.get("mean") is None:
        text = "n/a"
    else:
        text = f"{stats['mean']:.{digits}f}"
        if stats.get("std") is not None:
            text += f" ± {stats['std']:.{digits}f}"
    if show_nonfinite and stats and stats.get("n_nonfinite"):
        text += f" ({stats['n_nonfinite']} inf)"
    return text


def _escape(cell: Any) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned)."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(_escape(c) for c in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def pooled_iou_text(miou: Mapping[str, Any] | None, class_id: int | None, digits: int = 3) -> str:
    """The pooled (dataset-level) IoU of a class of ``summary["miou"]`` (``class_id`` None: the mean
    over classes), or ``"n/a"``."""
    if not miou:
        return "n/a"
    if class_id is None:
        value = miou.get("mean_iou_pooled")
    else:
        value = (miou.get("classes") or {}).get(str(class_id), {}).get("iou_pooled")
    return "n/a" if value is None else f"{value:.{digits}f}"


def miou_notes(miou: Mapping[str, Any] | None) -> list[str]:
    """One line naming both mean IoUs of ``summary["miou"]`` (none without it)."""
    if not miou or miou.get("mean_iou_per_case") is None:
        return []
    pooled = miou.get("mean_iou_pooled")
    return [
        f"mIoU (mean over classes of each class's mean IoU over cases): {miou['mean_iou_per_case']:.4f}; "
        "dataset-level mIoU (per class, intersections and unions summed over cases, then the mean over "
        f"classes; column 'IoU pooled'): {'n/a' if pooled is None else f'{pooled:.4f}'}."
    ]


def evaluation_markdown(result: EvaluationResult) -> str:
    """Per-class table of mean ± sd over cases, an overall row, and notes."""
    tol = result.settings.get("nsd_tolerance_mm", 1.0)
    band = result.settings.get("boundary_band_mm")
    miou = result.summary.get("miou")
    unit = str(result.settings.get("distance_unit", "mm"))
    vol = {"ml": "(ml)", "mm2": "area (mm²)", "px2": "area (px²)"}.get(result.volume_unit, result.volume_unit)
    header = [
        "class",
        "n",
        "Dice",
        "IoU",
        f"HD95 ({unit})",
        f"ASSD ({unit})",
        f"NSD@{tol:g}{unit}",
        f"BIoU@{band:g}{unit}" if band is not None else "BIoU",
        "IoU pooled",
        f"abs ΔV {vol}",
        "rel ΔV",
    ]
    body = []
    groups: list[tuple[str, int | None, Mapping[str, Any]]] = [
        (f"{name} ({cid})", cid, result.summary["classes"][str(cid)]) for cid, name in result.labels.items()
    ]
    if len(result.labels) > 1:
        groups.append(("**all classes**", None, result.summary["overall"]))
    for title, cid, group in groups:
        m = group["metrics"]
        body.append(
            [
                title,
                m["dice"]["n"],
                mean_sd(m["dice"]),
                mean_sd(m["iou"]),
                mean_sd(m["hd95"], 2),
                mean_sd(m["assd"], 2),
                mean_sd(m["nsd"]),
                mean_sd(m.get("boundary_iou")),
                pooled_iou_text(miou, cid),
                mean_sd(m["abs_volume_diff_ml"], 2),
                mean_sd(m["rel_volume_diff"], 3),
            ]
        )
    text = markdown_table(header, body)
    notes = _notes(result, band, unit)
    return text + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _notes(result: EvaluationResult, band: float | None, unit: str) -> list[str]:
    """The notes under the table: cases, boundary IoU band, mean IoUs, empty masks, unmatched cases."""
    notes = [f"{len(result.cases)} cases evaluated; values are mean ± sample sd over cases."]
    if band is not None:
        notes.append(
            f"BIoU@{band:g}{unit}: boundary IoU (Cheng et al., CVPR 2021), the IoU of the {band:g} {unit} "
            "inner bands of prediction and reference."
        )
    notes.extend(miou_notes(result.summary.get("miou")))
    n_inf = sum(1 for r in result.rows if r.hd95 == float("inf"))
    if n_inf:
        notes.append(
            f"{n_inf} case/class pairs have an empty prediction or reference: their HD95/ASSD are "
            "infinite and left out of the means (counted as 'inf')."
        )
    n_both = sum(1 for r in result.rows if r.ref_empty and r.pred_empty)
    if n_both:
        notes.append(
            f"{n_both} case/class pairs are empty in both prediction and reference and count as perfect "
            "(Dice 1, distances 0); restrict --labels to leave them out."
        )
    if result.summary.get("mean_iou") is not None:
        notes.append(f"Mean IoU over classes (pooled pixels): {result.summary['mean_iou']:.4f}.")
    if result.unmatched_ref:
        notes.append(
            f"References without prediction ({len(result.unmatched_ref)}): {', '.join(result.unmatched_ref)}"
        )
    if result.unmatched_pred:
        listed = ", ".join(result.unmatched_pred)
        notes.append(f"Predictions without reference ({len(result.unmatched_pred)}): {listed}")
    return notes
