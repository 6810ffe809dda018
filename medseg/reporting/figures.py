"""Matplotlib plumbing shared by the pictures: Agg figures, PNG bytes, atomic saving.

Figures are built as :class:`matplotlib.figure.Figure` objects drawn by the Agg
canvas: no pyplot state, no GUI backend, safe in worker processes and on servers.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

__all__ = ["figure_png", "new_figure", "save_png"]


def new_figure(width_in: float, height_in: float, dpi: int = 100, facecolor: str = "white") -> Any:
    """A matplotlib Figure attached to an Agg canvas (``width_in`` x ``height_in`` inches).

    The Agg backend is selected before anything could import pyplot; the figure itself
    never touches pyplot, so an interactive session keeps its own backend.
    """
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # never switch the backend of a live pyplot session
        matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor=facecolor)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any) -> bytes:
    """The figure rendered as PNG bytes (at the figure's own size and dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def save_png(data: bytes, path: str | Path) -> Path:
    """Write PNG bytes to ``path`` atomically."""
    from medseg.io.atomic import write_bytes_atomic

    out = Path(path)
    write_bytes_atomic(out, data)
    return out
