"""Pictures and reports: overlays, training curves, HTML reports and run comparisons.

Everything is drawn with matplotlib's Agg backend (no display needed) and every HTML
page is self-contained (inline CSS/JS, images as data URIs) so it opens offline.
Heavy imports happen inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Comparison",
    "build_report",
    "compare_runs",
    "overlay",
    "plot_curves",
    "render_case",
    "render_overlay",
    "write_case_overlays",
]

if TYPE_CHECKING:  # pragma: no cover
    from medseg.reporting.cases import render_case, write_case_overlays
    from medseg.reporting.compare import Comparison, compare_runs
    from medseg.reporting.curves import plot_curves
    from medseg.reporting.overlay import overlay, render_overlay
    from medseg.reporting.report import build_report

_LAZY = {
    "Comparison": "medseg.reporting.compare",
    "compare_runs": "medseg.reporting.compare",
    "build_report": "medseg.reporting.report",
    "overlay": "medseg.reporting.overlay",
    "render_overlay": "medseg.reporting.overlay",
    "plot_curves": "medseg.reporting.curves",
    "render_case": "medseg.reporting.cases",
    "write_case_overlays": "medseg.reporting.cases",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medseg.reporting' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
