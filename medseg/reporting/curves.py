"""Training curves of a run: loss, validation Dice per class and learning rate.

Reads the run's ``metrics.csv`` (columns ``epoch, step, train_loss, val_loss,
val_dice_mean, lr, seconds`` and one ``val_dice_<class>`` per class; validation cells
are empty on epochs without validation) and draws three panels into one PNG.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import CorruptFileError, InputNotFoundError

__all__ = [
    "REQUIRED_COLUMNS",
    "RunMetrics",
    "has_validation",
    "plot_curves",
    "read_run_metrics",
    "render_curves",
]

#: Columns every run metrics.csv has.
REQUIRED_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_dice_mean", "lr", "seconds")


class RunMetrics(dict):
    """Columns of a run's metrics.csv as float arrays (NaN for empty cells), keyed by name."""

    @property
    def class_columns(self) -> list[str]:
        """The ``val_dice_<class>`` columns, in file order."""
        return [c for c in self if c.startswith("val_dice_") and c != "val_dice_mean"]

    @property
    def n_rows(self) -> int:
        """Number of logged rows."""
        return len(self["epoch"]) if "epoch" in self else 0


def _number(text: str | None) -> float:
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_run_metrics(metrics_csv: str | Path) -> RunMetrics:
    """Read a run's metrics.csv.

    Raises:
        InputNotFoundError: the file does not exist.
        CorruptFileError: the file lacks the required columns.
    """
    path = Path(metrics_csv)
    if not path.is_file():
        raise InputNotFoundError(
            f"no training metrics at {path}", hint="give a run folder written by medseg train"
        )
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorruptFileError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise CorruptFileError(
            f"{path} lacks the columns {', '.join(missing)}",
            hint=f"a run metrics.csv has the columns {', '.join(REQUIRED_COLUMNS)}, val_dice_<class>...",
        )
    out = RunMetrics()
    for column in columns:
        out[column] = np.array([_number(r.get(column)) for r in records], dtype=np.float64)
    return out


def _x_axis(metrics: RunMetrics) -> tuple[np.ndarray, str]:
    epochs = metrics["epoch"]
    finite = epochs[np.isfinite(epochs)]
    if finite.size == epochs.size and np.unique(finite).size == finite.size:
        return epochs, "epoch"
    return metrics["step"], "step"


def has_validation(metrics: RunMetrics) -> bool:
    """True when some row holds a validation value (loss or Dice)."""
    columns = ["val_loss", "val_dice_mean", *metrics.class_columns]
    return any((y := metrics.get(c)) is not None and bool(np.isfinite(y).any()) for c in columns)


def render_curves(metrics: RunMetrics, title: str | None = None) -> bytes:
    """The PNG of the curves as bytes: loss, validation Dice and learning rate panels.

    A run without any validation value (trained without validation, or not validated yet)
    gets no Dice panel: two panels, loss and learning rate, on a narrower picture.
    """
    from medseg.reporting.figures import figure_png, new_figure

    validated = metrics.n_rows == 0 or has_validation(metrics)
    n_panels = 3 if validated else 2
    fig = new_figure(13.0 * n_panels / 3, 4.2, dpi=100)
    step = 0.99 / n_panels
    axes = [fig.add_axes((step * (0.15 + n), 0.13, step * 0.79, 0.70)) for n in range(n_panels)]
    if title:
        fig.text(0.5, 0.985, title, ha="center", va="top", fontsize=12)
    if metrics.n_rows == 0:
        for ax in axes:
            ax.text(0.5, 0.5, "no epoch logged yet", ha="center", va="center", transform=ax.transAxes)
        return figure_png(fig)
    x, x_label = _x_axis(metrics)

    def plot(ax: Any, column: str, **style: Any) -> bool:
        """Draw ``column`` against x where both are finite; False when nothing was drawn."""
        y = metrics.get(column)
        if y is None:
            return False
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            return False
        ax.plot(x[ok], y[ok], marker="o" if ok.sum() < 30 else None, markersize=3, **style)
        return True

    loss_ax, lr_ax = axes[0], axes[-1]
    plot(loss_ax, "train_loss", label="train", color="#1f77b4")
    plot(loss_ax, "val_loss", label="validation", color="#d62728")
    loss_ax.set_title("loss")
    if validated:
        _dice_panel(axes[1], metrics, x, x_label, plot)
    lr = metrics.get("lr")
    plot(lr_ax, "lr", color="#555555")
    lr_ax.set_title("learning rate")
    if lr is not None:
        positive = lr[np.isfinite(lr) & (lr > 0)]
        if positive.size and positive.max() / positive.min() > 20:
            lr_ax.set_yscale("log")
    for ax in axes:
        ax.set_xlabel(x_label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return figure_png(fig)


def _dice_panel(ax: Any, metrics: RunMetrics, x: np.ndarray, x_label: str, plot: Any) -> None:
    """Validation Dice per class and mean, the best value starred."""
    ax.set_title("validation Dice")
    palette = ["#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
    for n, column in enumerate(metrics.class_columns):
        plot(ax, column, label=column[len("val_dice_") :], color=palette[n % len(palette)], lw=1.2)
    if plot(ax, "val_dice_mean", label="mean", color="black", lw=2.0):
        y = metrics["val_dice_mean"]
        ok = np.isfinite(y) & np.isfinite(x)
        best = int(np.flatnonzero(ok)[np.argmax(y[ok])])
        ax.plot(
            [x[best]],
            [y[best]],
            marker="*",
            linestyle="none",
            color="gold",
            markersize=14,
            markeredgecolor="black",
            label=f"best {y[best]:.4f} ({x_label} {x[best]:g})",
        )
    else:
        ax.text(0.5, 0.5, "no validation Dice yet", ha="center", va="center", transform=ax.transAxes)


def plot_curves(metrics_csv: str | Path, out_png: str | Path, title: str | None = None) -> Path:
    """Draw ``curves.png`` (loss, validation Dice per class, learning rate) from a run's metrics.csv.

    Args:
        metrics_csv: The run's metrics.csv.
        out_png: Where to write the picture (atomically).
        title: Optional title (defaults to the run folder's name).

    Returns:
        The written path.
    """
    from medseg.reporting.figures import save_png

    metrics = read_run_metrics(metrics_csv)
    return save_png(render_curves(metrics, title or Path(metrics_csv).resolve().parent.name), out_png)
