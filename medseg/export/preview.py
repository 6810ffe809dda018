"""A quick look at a mask on its image: label contours drawn on one axial slice (PNG).

A minimal check picture for exports and imports; not a reporting module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import GeometryMismatchError
from medseg.volume import Volume


def save_overlay_png(
    image: Volume,
    mask: Volume,
    output: str | Path,
    slice_index: int | None = None,
    window: tuple[float, float] = (40.0, 400.0),
    colors: dict[int, tuple[int, int, int]] | None = None,
    title: str | None = None,
) -> Path:
    """Draw the outline of every label of ``mask`` on one slice of ``image`` and save a PNG.

    Both volumes must share a grid. They are shown in radiological convention (patient
    left on the right of the picture, anterior up), one slice along the third axis of
    the LPS-reoriented grid; by default the slice holding most labelled voxels.

    Args:
        image: The scan (e.g. CT in HU).
        mask: Label map on the same grid.
        output: PNG path (written atomically).
        slice_index: Slice to show (in the LPS-reoriented grid), default the fullest.
        window: (level, width) of the grey scale.
        colors: Colour (0-255 RGB) per label value; default matplotlib's tab20.
        title: Optional title.

    Returns:
        The written path.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    from medseg import geometry
    from medseg.io.atomic import atomic_output

    if not geometry.same_grid(image.affine, image.spatial_shape, mask.affine, mask.spatial_shape, 1e-3):
        raise GeometryMismatchError("the overlay needs the image and the mask on one grid")
    img = image.reoriented("LPS").array
    lab = mask.reoriented("LPS").array
    img = img[..., 0] if img.ndim == 4 else img
    if slice_index is None:
        counts = (lab > 0).sum(axis=(0, 1))
        slice_index = int(np.argmax(counts))
    level, width = window
    picture = np.clip((img[:, :, slice_index].T.astype(np.float32) - (level - width / 2)) / width, 0, 1)
    labels2d = lab[:, :, slice_index].T
    spacing = image.reoriented("LPS").spacing
    fig = Figure(figsize=(6, 6 * picture.shape[0] * spacing[1] / (picture.shape[1] * spacing[0])))
    ax = fig.subplots()
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, aspect=spacing[1] / spacing[0], interpolation="nearest")
    cmap = matplotlib.colormaps["tab20"]
    for n, value in enumerate(v for v in np.unique(labels2d) if v != 0):
        color = np.array(colors[int(value)]) / 255.0 if colors and int(value) in colors else cmap(n % 20)
        ax.contour(labels2d == value, levels=[0.5], colors=[color], linewidths=1.2)
    ax.set_axis_off()
    ax.set_title(title or f"slice {slice_index}", fontsize=9)
    fig.tight_layout()
    out = Path(output)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out
