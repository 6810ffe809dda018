"""Rendering of a :class:`~medseg.reporting.compare.Comparison`: Markdown, HTML and a figure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg.evaluation.markdown import markdown_table, mean_sd
from medseg.reporting.html import Cell, esc, img_tag, page, table

if TYPE_CHECKING:  # pragma: no cover
    from medseg.reporting.compare import Comparison, ComparisonRow

__all__ = [
    "COMPARED_METRICS",
    "LESION_METRICS",
    "comparison_html",
    "comparison_markdown",
    "comparison_png",
    "metric_info",
    "pooled_iou_table",
]

#: metric -> (label, higher is better, boundary metric)
COMPARED_METRICS: dict[str, tuple[str, bool, bool]] = {
    "dice": ("Dice", True, False),
    "iou": ("IoU", True, False),
    "boundary_iou": ("Boundary IoU", True, True),
    "hd95": ("HD95", False, True),
    "assd": ("ASSD", False, True),
    "nsd": ("NSD", True, True),
}
#: lesion-wise metric -> (label, higher is better, boundary metric); ``lesion_f1@t`` is added per threshold
LESION_METRICS: dict[str, tuple[str, bool, bool]] = {
    "lesion_dice": ("lesion Dice", True, False),
    "lesion_hd95": ("lesion HD95", False, False),
}
_DIGITS = {"hd95": 2, "assd": 2, "lesion_hd95": 2}  # every other metric: 3
#: File name of the overlay of the error-against-distance curves.
ERROR_CURVE_PNG = "compare_error_curve.png"


def metric_info(metric: str) -> tuple[str, bool, bool]:
    """``(label, higher is better, boundary metric)`` of a compared metric (``lesion_f1@t`` included)."""
    if metric.startswith("lesion_f1@"):
        return f"lesion F1 @IoU>{metric.split('@', 1)[1]}", True, False
    return COMPARED_METRICS.get(metric) or LESION_METRICS[metric]


def _digits(metric: str) -> int:
    return _DIGITS.get(metric, 3)


def _metric_label(metric: str, unit: str) -> str:
    label, higher, _ = metric_info(metric)
    if metric in ("hd95", "assd", "lesion_hd95"):
        label += f" ({unit})"
    return f"{label} {'↑' if higher else '↓'}"


def _verdict(metric: str, diff: dict[str, Any]) -> str | None:
    """``"better"``/``"worse"`` for a significant (p < 0.05) paired difference, else None."""
    mean, p = diff.get("mean_diff"), diff.get("p_value")
    if mean is None or p is None or p >= 0.05 or mean == 0:
        return None
    higher = metric_info(metric)[1]
    return "better" if (mean > 0) == higher else "worse"


def _diff_text(row: ComparisonRow, n: int) -> str:
    diff = row.diffs[n]
    if not diff or diff.get("mean_diff") is None:
        return "n/a"
    digits = _digits(row.metric) + 1
    text = f"{diff['mean_diff']:+.{digits}f}"
    p = diff.get("p_value")
    if p is not None:
        text += f" (p={p:.3g}{'*' if p < 0.05 else ''})"
    verdict = _verdict(row.metric, diff)
    if verdict:
        text += f" {verdict}"
    if diff.get("n_excluded"):
        text += f" [{diff['n_excluded']} pairs with inf left out]"
    return text


def _header(comparison: Comparison) -> list[str]:
    first = comparison.names[0]
    header = ["class", "metric"]
    for n, name in enumerate(comparison.names):
        header.append(name)
        if n:
            header.append(f"Δ {name} - {first}")
    return header


def comparison_markdown(comparison: Comparison) -> str:
    """Markdown table: mean ± sd per run, paired difference to the first run, Wilcoxon p."""
    body = []
    for row in comparison.rows:
        label = _metric_label(row.metric, comparison.distance_unit)
        cells: list[Any] = [row.class_name, f"**{label}**" if row.boundary else label]
        for n, stats in enumerate(row.stats):
            cells.append(mean_sd(stats, _digits(row.metric)))
            if n:
                cells.append(_diff_text(row, n))
        body.append(cells)
    notes = [
        f"Runs: {', '.join(f'{n} = {f}' for n, f in zip(comparison.names, comparison.folders))}.",
        "Values: mean ± sample sd over cases; Δ: mean paired difference to the first run over the cases both "
        "evaluated, with the two-sided Wilcoxon signed-rank p-value (* p < 0.05).",
        "Boundary metrics (Boundary IoU, HD95, ASSD, NSD) in bold; ↑ higher is better, ↓ lower is better. "
        "'all classes' pairs the per-case mean over classes (for IoU: the mIoU over cases).",
    ]
    if any(r.metric.startswith("lesion_") for r in comparison.rows):
        notes.append(
            "Lesion rows: BraTS 2023 lesion-wise Dice and HD95 per case, and the per-case lesion detection "
            "F1 at the first IoU threshold (medseg evaluate --lesions)."
        )
    text = markdown_table(_header(comparison), body) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    header, pooled = pooled_iou_table(comparison)
    text += "\nDataset-level IoU (intersections and unions summed over cases, per class; last row: mIoU):\n\n"
    text += markdown_table(header, pooled)
    if comparison.error_curves:
        text += (
            "\nMisclassification rate against the distance to the reference boundary, pooled over cases "
            f"(boundary_error.json of every run): ![error against distance]({ERROR_CURVE_PNG})\n"
        )
    return text


def _class_ids(comparison: Comparison) -> list[tuple[int, str]]:
    """The compared classes ``(id, name)``, in order."""
    seen: dict[int, str] = {}
    for row in comparison.rows:
        if row.class_id is not None:
            seen.setdefault(row.class_id, row.class_name)
    return list(seen.items())


def pooled_iou_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: per compared class the dataset-level IoU of each run (``summary["miou"]``),
    then the mean over those classes (the dataset-level mIoU)."""
    classes = _class_ids(comparison)
    per_run = []
    for result in comparison.results:
        pooled = (result.summary.get("miou") or {}).get("classes") or {}
        per_run.append([(pooled.get(str(cid)) or {}).get("iou_pooled") for cid, _ in classes])
    rows = [[name, *(_fmt(v[i]) for v in per_run)] for i, (_, name) in enumerate(classes)]
    means = [float(np.mean(f)) if (f := [x for x in v if x is not None]) else None for v in per_run]
    rows.append(["mean over classes (mIoU)", *(_fmt(m) for m in means)])
    return ["class", *comparison.names], rows


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def comparison_png(comparison: Comparison) -> bytes:
    """Per-case values of each metric per run (box plots, with each case's runs joined by a line)."""
    from medseg.reporting.figures import figure_png, new_figure

    metrics = list(COMPARED_METRICS)
    fig = new_figure(3.2 * len(metrics) + 0.8, 4.2, dpi=100)
    group = "all classes" if len(comparison.results[0].labels) > 1 else None
    for m, metric in enumerate(metrics):
        ax = fig.add_axes((0.05 + m / len(metrics) * 0.95, 0.2, 0.95 / len(metrics) - 0.06, 0.64))
        per_run = []
        for result in comparison.results:
            if group:
                values = result.case_mean(metric)
            else:
                cid = next(iter(result.labels))
                values = {r.case: getattr(r, metric) for r in result.rows if r.class_id == cid}
            per_run.append(values)
        cases = sorted(set.intersection(*(set(v) for v in per_run)))
        data = np.array([[v.get(c, math.nan) for c in cases] for v in per_run], dtype=np.float64)
        if len(cases) <= 200:
            for k in range(data.shape[1]):
                ax.plot(range(1, len(per_run) + 1), data[:, k], color="#9aa3b5", lw=0.6, alpha=0.6, zorder=1)
        finite = [row[np.isfinite(row)] for row in data]
        ax.boxplot(finite, positions=range(1, len(per_run) + 1), widths=0.5, showmeans=True, showfliers=False)
        ax.set_xticks(range(1, len(per_run) + 1))
        ax.set_xticklabels(comparison.names, rotation=20, ha="right", fontsize=8)
        label = _metric_label(metric, comparison.distance_unit)
        ax.set_title(label + (" (boundary)" if COMPARED_METRICS[metric][2] else ""), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    fig.text(
        0.5,
        0.97,
        f"per-case {'mean over classes' if group else 'values'}; lines join the same case",
        ha="center",
        va="top",
        fontsize=10,
    )
    return figure_png(fig)


def comparison_html(comparison: Comparison, png: bytes | None = None, curve_png: bytes | None = None) -> str:
    """Self-contained HTML page of the comparison (boundary metric rows highlighted), with the per-case
    figure ``png`` and the overlay of the error-against-distance curves ``curve_png``."""
    rows, classes = [], []
    for row in comparison.rows:
        label = _metric_label(row.metric, comparison.distance_unit)
        cells: list[Cell | str] = [
            row.class_name,
            Cell(esc(label) + (" <small>boundary</small>" if row.boundary else ""), None, "text"),
        ]
        for n, stats in enumerate(row.stats):
            sort = "nan" if stats.get("mean") is None else repr(float(stats["mean"]))
            cells.append(Cell(esc(mean_sd(stats, _digits(row.metric))), sort))
            if n:
                diff = row.diffs[n] or {}
                value = diff.get("mean_diff")
                cells.append(
                    Cell(
                        esc(_diff_text(row, n)),
                        "nan" if value is None else repr(float(value)),
                        _verdict(row.metric, diff),
                    )
                )
        rows.append(cells)
        classes.append("boundary" if row.boundary else None)
    runs = "".join(
        f"<li><b>{esc(n)}</b>: <code>{esc(f)}</code></li>"
        for n, f in zip(comparison.names, comparison.folders)
    )
    body = [
        f"<h1>medseg compare: {esc(' vs '.join(comparison.names))}</h1>",
        f'<ul class="meta">{runs}</ul>',
        "<p>Mean ± sample sd over cases. Δ is the mean paired difference to the first run over the cases "
        "both evaluated, with the two-sided Wilcoxon signed-rank p-value (* p &lt; 0.05); significant "
        "differences are coloured green (better) or red (worse). Rows of boundary metrics (Boundary IoU, "
        "HD95, ASSD, NSD) are highlighted.</p>",
        table(_header(comparison), rows, sortable=True, row_classes=classes, table_id="comparison"),
        "<h2>Dataset-level IoU</h2><p>Per class, intersections and unions summed over cases; last row: the "
        "mean over classes (mIoU).</p>",
        table(*pooled_iou_table(comparison)),
    ]
    if png:
        body.append(
            f"<figure>{img_tag(png, 'per-case metrics per run')}<figcaption>Per-case values; lines join "
            "the same case across runs.</figcaption></figure>"
        )
    if curve_png:
        body.append(
            f'<h2>Error against distance from the reference boundary</h2><figure id="error-curve">'
            f"{img_tag(curve_png, 'error rate against distance to the reference boundary')}<figcaption>"
            f"Misclassification rate per distance bin, counts pooled over cases (also {ERROR_CURVE_PNG})."
            "</figcaption></figure>"
        )
    return page("medseg compare", "".join(body))
