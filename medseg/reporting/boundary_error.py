"""Pictures and tables of the error rate against the distance to the reference boundary.

Reads the content of an evaluation folder's ``boundary_error.json``
(:func:`~medseg.evaluation.boundary.pooled_errors_json`): bin edges and, per class, voxel and
error counts pooled over cases. :func:`error_curve_png` draws one panel per class with one line per
run (``medseg compare`` overlays runs; ``medseg report`` draws a single run);
:func:`error_curve_section` is the HTML section of the report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.reporting.html import Cell, esc, img_tag, table

log = logging.getLogger(__name__)

__all__ = ["comparable_curves", "curve_panels", "error_curve_png", "error_curve_section"]

#: Colours of the runs, in order (matplotlib's tab10).
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _edges(data: Mapping[str, Any]) -> np.ndarray:
    """The bin edges of a boundary_error.json (a None last edge is inf)."""
    return np.array([math.inf if e is None else float(e) for e in data["bins"]], dtype=np.float64)


def _centres(edges: np.ndarray) -> np.ndarray:
    """Bin centres; an infinite last bin is drawn one previous-bin width past its start."""
    lo, hi = edges[:-1], edges[1:].copy()
    if not math.isfinite(hi[-1]):
        width = (lo[-1] - lo[-2]) if lo.size > 1 else 1.0
        hi[-1] = lo[-1] + 2 * width
    return (lo + hi) / 2


def _label(edges: np.ndarray, i: int, unit: str) -> str:
    lo, hi = edges[i], edges[i + 1]
    return f"{lo:g}+ {unit}" if not math.isfinite(hi) else f"{lo:g}-{hi:g} {unit}"


def curve_panels(data: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(key, title)`` of the classes every boundary_error.json of ``data`` holds (in the first one's
    order), then ``all_classes`` when all hold it."""
    first = data[0]
    keys = [k for k in first.get("classes", {}) if all(k in d.get("classes", {}) for d in data[1:])]
    panels = [(k, f"{first['classes'][k].get('name', k)} ({k})") for k in keys]
    if len(keys) > 1 and all("all_classes" in d for d in data):
        panels.append(("all_classes", "all classes"))
    return panels


def _entry(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return data["all_classes"] if key == "all_classes" else data["classes"][key]


def comparable_curves(
    names: Sequence[str], data: Sequence[Mapping[str, Any] | None]
) -> dict[str, Mapping[str, Any]] | None:
    """``{run name: boundary_error.json}`` when every run has one over the same bins and unit, else
    None (a warning names what differs)."""
    if not data or any(d is None for d in data):
        return None
    runs = [d for d in data if d is not None]
    bins = {repr(d.get("bins")) for d in runs}
    units = {d.get("distance_unit", "mm") for d in runs}
    if len(bins) > 1 or len(units) > 1:
        log.warning("the runs' boundary_error.json use different bins or units: no error curve overlay")
        return None
    if not curve_panels(runs):
        return None
    return dict(zip(names, runs))


def error_curve_png(curves: Mapping[str, Mapping[str, Any]], side: str = "both") -> bytes:
    """One panel per class (and all classes): the pooled error rate per distance bin, one line per run.

    Args:
        curves: ``{run name: content of boundary_error.json}``, over the same bins.
        side: "both", "inside" (missed voxels) or "outside" (false positives).

    The y axis is logarithmic when some rate is positive (rates far from the boundary are small);
    bins without voxels and zero rates leave gaps.
    """
    from medseg.reporting.figures import figure_png, new_figure

    runs = list(curves.values())
    panels = curve_panels(runs)
    edges = _edges(runs[0])
    x = _centres(edges)
    unit = runs[0].get("distance_unit", "mm")
    fig = new_figure(3.6 * len(panels) + 0.6, 3.6, dpi=100)
    for n, (key, title) in enumerate(panels):
        ax = fig.add_axes((0.06 + n / len(panels) * 0.94, 0.2, 0.94 / len(panels) - 0.07, 0.66))
        positive = False
        for k, (name, data) in enumerate(curves.items()):
            rates = np.array([math.nan if v is None else v for v in _entry(data, key)[side]["error_rate"]])
            positive |= bool(np.any(rates > 0))
            shown = np.where(rates > 0, rates, math.nan)
            ax.plot(x, shown, marker="o", ms=3.5, lw=1.4, color=_COLOURS[k % len(_COLOURS)], label=name)
        if positive:
            ax.set_yscale("log")
        ax.set_xlim(left=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"distance to the reference boundary ({unit})", fontsize=8)
        ax.grid(True, alpha=0.3, which="both")
        if n == 0:
            ax.set_ylabel("error rate (wrong / voxels)", fontsize=8)
            ax.legend(fontsize=7, loc="upper right")
    what = {"both": "", "inside": " inside the reference", "outside": " outside the reference"}[side]
    fig.text(
        0.5, 0.97, f"misclassification rate{what}, pooled over cases", ha="center", va="top", fontsize=10
    )
    return figure_png(fig)


def _rates_table(data: Mapping[str, Any]) -> str:
    """Per class: the pooled error rate of each bin, with the bin's voxel count."""
    edges = _edges(data)
    unit = str(data.get("distance_unit", "mm"))
    header = ["class", *(_label(edges, i, unit) for i in range(edges.size - 1))]
    rows = []
    for key, title in curve_panels([data]):
        both = _entry(data, key)["both"]
        cells: list[Cell | str] = [title]
        for rate, voxels in zip(both["error_rate"], both["voxels"]):
            text = "n/a" if rate is None else f"{rate:.4f}"
            sort = "nan" if rate is None else repr(float(rate))
            cells.append(Cell(f"{esc(text)}<br><small>{int(voxels)} vox</small>", sort))
        rows.append(cells)
    return table(header, rows)


def error_curve_section(data: Mapping[str, Any] | None, title: str = "this run") -> str:
    """The report's HTML section of a boundary_error.json (empty without one)."""
    if not data or not curve_panels([data]):
        return ""
    png = error_curve_png({title: data})
    return (
        "<h2>Error against distance from the reference boundary</h2>"
        "<p>Every voxel is binned by the distance from its centre to the nearest voxel centre on the other "
        "side of the reference boundary; the rate is wrong voxels / voxels of the bin, with the counts "
        "summed over cases first.</p>"
        f"<figure>{img_tag(png, 'error rate against distance to the reference boundary')}"
        "<figcaption>Misclassification rate per distance bin (log scale; zero rates leave gaps), pooled "
        "over cases."
        "</figcaption></figure>" + _rates_table(data)
    )
