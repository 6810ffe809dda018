"""Overlay pictures: reference and prediction contours on axial, coronal and sagittal slices.

Slices pass through the centre of mass of the reference foreground (of the prediction
when the reference is empty). Volumes are first reoriented to LPS (no interpolation) so
that every picture is shown in radiological convention whatever the file's voxel order:

* axial: patient's right on the viewer's left, anterior at the top;
* coronal: patient's right on the viewer's left, superior at the top;
* sagittal: anterior on the left, superior at the top.

Pixels are drawn in millimetres, so anisotropic voxels keep their true aspect. The
reference is drawn as solid contours, the prediction as dashed contours in another
colour; the legend names each class. 2D images (PNG/TIFF) are shown as stored.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import GeometryMismatchError
from medseg.volume import Volume

__all__ = [
    "OverlayPicture",
    "PanelInfo",
    "class_colors",
    "looks_like_ct",
    "overlay",
    "render_overlay",
    "scaled_intensities",
]

#: (reference, prediction) colours of the first classes; later classes get spread hues.
_COLOR_PAIRS = [
    ("#00ff00", "#ff2d2d"),  # green / red
    ("#00bfff", "#ffa500"),  # sky blue / orange
    ("#ffff00", "#ff00ff"),  # yellow / magenta
    ("#00ffc8", "#ff7fbf"),  # aquamarine / pink
]
_MAX_LEGEND_CLASSES = 16
_PANEL_SIZE = (12.0, 5.2)  # inches, three views
_SINGLE_SIZE = (6.4, 6.4)  # inches, one view
_DPI = 100


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def class_colors(labels: Mapping[int, str]) -> dict[int, tuple[str, str]]:
    """``{label: (reference colour, prediction colour)}`` (hex), stable by label order."""
    out: dict[int, tuple[str, str]] = {}
    for index, label in enumerate(sorted(labels)):
        if index < len(_COLOR_PAIRS):
            out[label] = _COLOR_PAIRS[index]
        else:
            hue = (index * 0.618033988749895) % 1.0
            out[label] = (_hex(colorsys.hsv_to_rgb(hue, 1.0, 1.0)), _hex(colorsys.hsv_to_rgb(hue, 0.45, 1.0)))
    return out


@dataclass
class PanelInfo:
    """Where one view landed in the picture.

    Attributes:
        view: ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"image"`` (2D).
        slice_index: Index of the slice along the LPS axis cut by the view (0 for 2D).
        pixel_box: ``(left, top, right, bottom)`` of the slice's image in PNG pixel coordinates.
        shape: ``(rows, columns)`` of the displayed slice.
        labels_shown: Labels whose contour (reference or prediction) is in this view.
    """

    view: str
    slice_index: int
    pixel_box: tuple[float, float, float, float]
    shape: tuple[int, int]
    labels_shown: list[int] = field(default_factory=list)


@dataclass
class OverlayPicture:
    """A rendered overlay: PNG bytes and the placement of each view."""

    png: bytes
    panels: list[PanelInfo]
    width: int
    height: int


def _check_same_grid(base: Volume, other: Volume | None, what: str) -> None:
    from medseg import geometry

    if other is None:
        return
    if not geometry.same_grid(base.affine, base.spatial_shape, other.affine, other.spatial_shape, 1e-3):
        raise GeometryMismatchError(
            f"the {what} {other.meta.source or '(in memory)'} {other.spatial_shape} is not on the grid of "
            f"the image {base.meta.source or '(in memory)'} {base.spatial_shape}",
            hint="resample it onto the image grid first (medseg.evaluation.resample.resample_to_grid)",
        )


def looks_like_ct(image: Volume) -> bool:
    """True for CT: DICOM modality CT, or integer-like values reaching air (about -1000 HU) and bone."""
    if image.meta.modality:
        return image.meta.modality.upper() == "CT"
    a = image.array
    return bool(a.size and float(a.min()) <= -900 and float(a.max()) >= 300)


def _scaled(image: Volume, window: object | None) -> np.ndarray:
    """Image intensities mapped to [0, 1]: a CT window, or the 1st-99th percentile range."""
    array = np.asarray(image.array[..., 0] if image.array.ndim == 4 else image.array, dtype=np.float32)
    if isinstance(window, str) and window.strip().lower() == "auto":
        window = "soft_tissue" if looks_like_ct(image) else None
    if window is not None:
        from medseg.transforms.intensity import apply_window

        return apply_window(array, window)  # type: ignore[arg-type]
    sample = array[:: max(1, array.shape[0] // 64), :: max(1, array.shape[1] // 64)]
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return np.zeros_like(array)
    lo, hi = np.percentile(finite, [1.0, 99.0])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros_like(array)
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0)


def scaled_intensities(image: Volume, window: object | None) -> np.ndarray:
    """Intensities in [0, 1] as the overlays show them: a CT window (``"auto"``: soft tissue for
    CT) or the 1st-99th percentile range."""
    return _scaled(image, window)


def _label_array(volume: Volume | None) -> np.ndarray | None:
    if volume is None:
        return None
    return np.asarray(volume.array[..., 0] if volume.array.ndim == 4 else volume.array)


def _is_2d_image(volume: Volume) -> bool:
    from medseg.io.formats import is_2d_source

    return is_2d_source(volume) and volume.spatial_shape[2] == 1


def _views(shape: tuple[int, int, int], center: tuple[int, int, int]) -> list[tuple[str, int]]:
    ci, cj, ck = center
    singleton = [ax for ax in range(3) if shape[ax] == 1]
    if singleton:  # one slice: show the plane of the other two axes
        return [({2: "axial", 1: "coronal", 0: "sagittal"}[singleton[0]], 0)]
    return [("axial", ck), ("coronal", cj), ("sagittal", ci)]


def _cut(array: np.ndarray, view: str, index: int) -> np.ndarray:
    """The displayed slice (rows top to bottom, columns left to right) of an LPS array."""
    if view == "axial":  # rows: anterior -> posterior, columns: right -> left
        return array[:, :, index].T
    if view == "coronal":  # rows: superior -> inferior, columns: right -> left
        return array[:, index, :].T[::-1]
    if view == "sagittal":  # rows: superior -> inferior, columns: anterior -> posterior
        return array[index, :, :].T[::-1]
    return array[:, :, 0]  # 2D image as stored


def _pixel_size(spacing: tuple[float, float, float], view: str) -> tuple[float, float]:
    """(row height, column width) in mm of a displayed slice."""
    si, sj, sk = spacing
    return {"axial": (sj, si), "coronal": (sk, si), "sagittal": (sk, sj), "image": (si, sj)}[view]


_EDGE_LETTERS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


def render_overlay(
    image: Volume | None,
    ref: Volume | None,
    pred: Volume | None,
    labels: Mapping[int, str],
    window: object | None = None,
    title: str | None = None,
) -> OverlayPicture:
    """Render the overlay picture in memory (see :func:`overlay`)."""
    from medseg.reporting.figures import figure_png, new_figure

    if ref is None and pred is None:
        raise ValueError("overlay needs a reference or a prediction")
    base = image if image is not None else (ref if ref is not None else pred)
    assert base is not None  # for type checkers: ref or pred is set
    _check_same_grid(base, ref, "reference")
    _check_same_grid(base, pred, "prediction")
    two_d = _is_2d_image(base)
    if not two_d:  # radiological display needs a known voxel order: LPS, exact (no interpolation)
        image, ref, pred = (v.reoriented("LPS") if v is not None else None for v in (image, ref, pred))
        base = image if image is not None else (ref if ref is not None else pred)
        assert base is not None
    gray = _scaled(image, window) if image is not None else np.zeros(base.spatial_shape, dtype=np.float32)
    ref_arr, pred_arr = _label_array(ref), _label_array(pred)
    views = (
        [("image", 0)]
        if two_d
        else _views(base.spatial_shape, _center(ref_arr, pred_arr, base.spatial_shape))
    )
    colors = class_colors(labels)

    size = _SINGLE_SIZE if len(views) == 1 else _PANEL_SIZE
    fig = new_figure(*size, dpi=_DPI, facecolor="black")
    visible: set[int] = set()
    for view, index in views:
        for arr in (ref_arr, pred_arr):
            if arr is not None:
                visible.update(int(v) for v in np.unique(_cut(arr, view, index)) if int(v) in labels)
    n_entries = min(len(visible), _MAX_LEGEND_CLASSES) + (len(visible) > _MAX_LEGEND_CLASSES)
    legend_h = (0.07 + 0.045 * max(1, -(-n_entries // 6))) * (_PANEL_SIZE[1] / size[1])
    title_h = 0.08 if title else 0.0
    width = 1.0 / len(views)
    placed = []
    for n, (view, index) in enumerate(views):
        ax = fig.add_axes((n * width + 0.01, legend_h, width - 0.02, 1.0 - legend_h - title_h - 0.06))
        panel, extent = _draw_panel(ax, view, index, gray, ref_arr, pred_arr, base.spacing, labels, colors)
        placed.append((panel, ax, extent))
    if title:
        fig.text(0.5, 1.0 - title_h / 2 - 0.01, title, ha="center", va="center", color="white", fontsize=12)
    panels = [p for p, _, _ in placed]
    _legend(fig, labels, colors, panels, has_ref=ref is not None, has_pred=pred is not None)
    png = figure_png(fig)
    height_px = int(round(size[1] * _DPI))
    for panel, ax, extent in placed:
        # extent = (left, right, bottom, top) in mm; display y grows upwards, PNG rows downwards
        (x0, y0), (x1, y1) = ax.transData.transform([(extent[0], extent[3]), (extent[1], extent[2])])
        panel.pixel_box = (float(x0), float(height_px - y0), float(x1), float(height_px - y1))
    return OverlayPicture(png, panels, int(round(size[0] * _DPI)), height_px)


def _center(
    ref: np.ndarray | None, pred: np.ndarray | None, shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    """Centre of mass of the reference foreground (else the prediction's, else the grid centre)."""
    from scipy import ndimage

    for arr in (ref, pred):
        if arr is not None and np.any(arr > 0):
            return tuple(int(round(c)) for c in ndimage.center_of_mass(arr > 0))  # type: ignore[return-value]
    return (shape[0] // 2, shape[1] // 2, shape[2] // 2)


def _draw_panel(
    ax: Any,
    view: str,
    index: int,
    gray: np.ndarray,
    ref: np.ndarray | None,
    pred: np.ndarray | None,
    spacing: tuple[float, float, float],
    labels: Mapping[int, str],
    colors: Mapping[int, tuple[str, str]],
) -> tuple[PanelInfo, tuple[float, float, float, float]]:
    """Draw one view: the slice in mm, reference (solid) and prediction (dashed) contours."""
    ax.set_facecolor("black")
    ax.set_axis_off()
    shown = _cut(gray, view, index)
    rows, cols = shown.shape
    dr, dc = _pixel_size(spacing, view)
    extent = (-0.5 * dc, (cols - 0.5) * dc, (rows - 0.5) * dr, -0.5 * dr)
    ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest", aspect="equal")
    # masks padded by one background pixel so that contours close at the slice border
    xs, ys = np.arange(-1, cols + 1) * dc, np.arange(-1, rows + 1) * dr
    present: list[int] = []
    for label in sorted(labels):
        for arr, which, style, line_width in ((ref, 0, "solid", 1.8), (pred, 1, "dashed", 1.5)):
            if arr is None:
                continue
            mask = _cut(arr, view, index) == label
            if not mask.any():
                continue
            ax.contour(
                xs,
                ys,
                np.pad(mask, 1).astype(np.float32),
                levels=[0.5],
                colors=[colors[label][which]],
                linewidths=line_width,
                linestyles=style,
            )
            if label not in present:
                present.append(label)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_title(view if view == "image" else f"{view} {index}", color="white", fontsize=10)
    if view in _EDGE_LETTERS:
        left, right, top, bottom = _EDGE_LETTERS[view]
        text = {"color": "#ffd700", "fontsize": 9, "transform": ax.transAxes, "fontweight": "bold"}
        ax.text(0.01, 0.5, left, ha="left", va="center", **text)
        ax.text(0.99, 0.5, right, ha="right", va="center", **text)
        ax.text(0.5, 0.99, top, ha="center", va="top", **text)
        ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **text)
    return PanelInfo(view, int(index), (0.0, 0.0, 0.0, 0.0), (rows, cols), present), extent


def _legend(
    fig: Any,
    labels: Mapping[int, str],
    colors: Mapping[int, tuple[str, str]],
    panels: list[PanelInfo],
    has_ref: bool,
    has_pred: bool,
) -> None:
    """Legend under the views: one entry per visible class showing its solid and dashed lines."""
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D

    shown = sorted({label for p in panels for label in p.labels_shown})
    extra = max(0, len(shown) - _MAX_LEGEND_CLASSES)
    shown = shown[:_MAX_LEGEND_CLASSES]
    handles, names = [], []
    for label in shown:
        ref_color, pred_color = colors[label]
        parts = []
        if has_ref:
            parts.append(Line2D([], [], color=ref_color, lw=2.0, ls="solid"))
        if has_pred:
            parts.append(Line2D([], [], color=pred_color, lw=2.0, ls="dashed"))
        handles.append(tuple(parts))
        names.append(str(labels[label]))
    if extra:
        handles.append((Line2D([], [], color="black", lw=0),))
        names.append(f"+{extra} more classes")
    which = " / ".join(w for w, on in (("reference: solid", has_ref), ("prediction: dashed", has_pred)) if on)
    if not handles:
        fig.text(0.5, 0.08, f"{which} (no labelled structure in these slices)", ha="center", color="white")
        return
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=min(len(handles), 6),
        frameon=False,
        labelcolor="white",
        fontsize=9,
        title=which,
        title_fontsize=9,
        handler_map={tuple: HandlerTuple(ndivide=None, pad=0.4)},
        handlelength=3.5,
    ).get_title().set_color("white")


def overlay(
    image: Volume | None,
    ref: Volume | None,
    pred: Volume | None,
    out_png: str | Path,
    labels: Mapping[int, str],
    window: object | None = None,
    title: str | None = None,
) -> OverlayPicture:
    """Write an overlay PNG of a case: reference (solid) and prediction (dashed) contours.

    Args:
        image: The scan (None draws on black). Must share the grid of ``ref``/``pred``.
        ref: Reference label map, or None.
        pred: Predicted label map, or None.
        out_png: Where to write the PNG (atomically).
        labels: ``{label id: class name}`` of the classes to draw.
        window: CT window (preset name such as ``"abdomen"``, ``"L,W"`` or a Window);
            None scales the 1st-99th intensity percentiles (suits MR); ``"auto"`` uses the
            soft-tissue window for CT (see :func:`looks_like_ct`) and percentiles otherwise.
        title: Text above the picture (case id, metrics...).

    Returns:
        The :class:`OverlayPicture` (PNG bytes and where each view landed).

    Raises:
        GeometryMismatchError: the volumes do not share one grid.
        ConfigError: an unknown window.
    """
    from medseg.reporting.figures import save_png

    picture = render_overlay(image, ref, pred, labels, window=window, title=title)
    save_png(picture.png, out_png)
    return picture
