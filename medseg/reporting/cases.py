"""Overlays of the cases of an evaluation (scan, reference and prediction read back from disk)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from medseg import geometry
from medseg.evaluation.results import EvaluationResult
from medseg.reporting.overlay import OverlayPicture, render_overlay
from medseg.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["case_title", "find_image", "load_case", "render_case", "write_case_overlays"]


def find_image(image_dir: str | Path | None, case: str) -> Path | None:
    """The scan of ``case`` in ``image_dir`` (``_0000`` suffix allowed), or None."""
    if not image_dir or not Path(image_dir).is_dir():
        return None
    from medseg.errors import MedsegError
    from medseg.evaluation.matching import list_cases

    try:
        return list_cases(image_dir, "image folder").get(case)
    except MedsegError as exc:  # an unusable image folder only costs the picture its background
        log.warning("no scans for the overlays: %s", exc)
        return None


def _on_grid(volume: Volume, grid: Volume, order: int) -> Volume:
    if geometry.same_grid(volume.affine, volume.spatial_shape, grid.affine, grid.spatial_shape, 1e-3):
        return Volume(volume.array, grid.affine, volume.meta)
    from medseg.evaluation.resample import resample_to_grid

    array = volume.array[..., 0] if volume.array.ndim == 4 else volume.array
    return resample_to_grid(
        Volume(array, volume.affine, volume.meta), grid.affine, grid.spatial_shape, order=order
    )


def case_title(result: EvaluationResult, case: str) -> str:
    """``case - Dice 0.912 | HD95 2.10 mm | NSD 0.950`` (means over the case's classes)."""
    parts = [case]
    unit = result.settings.get("distance_unit", "mm")
    for metric, label, fmt in (("dice", "Dice", ".3f"), ("hd95", "HD95", ".2f"), ("nsd", "NSD", ".3f")):
        value = result.case_mean(metric)[case]
        if not math.isnan(value):
            parts.append(f"{label} {value:{fmt}}{' ' + unit if metric == 'hd95' else ''}")
    return " | ".join(parts)


def load_case(result: EvaluationResult, case: str) -> tuple[Volume | None, Volume, Volume]:
    """``(scan or None, reference, prediction)`` of one evaluated case, all on the reference grid.

    The scan is there when the evaluation recorded an image folder holding it.

    Raises:
        KeyError: ``case`` is not in the evaluation.
        MedsegError: a file that cannot be read any more.
    """
    from medseg.evaluation.labelmaps import read_labels
    from medseg.io import read_volume
    from medseg.io.formats import luminance

    rows = [r for r in result.rows if r.case == case]
    if not rows:
        raise KeyError(f"case {case!r} is not in the evaluation")
    ref = read_labels(rows[0].ref_path)
    pred = _on_grid(read_labels(rows[0].pred_path), ref, order=0)
    image_path = find_image(result.settings.get("image_dir"), case)
    image = _on_grid(luminance(read_volume(image_path)), ref, order=1) if image_path else None
    return image, ref, pred


def render_case(result: EvaluationResult, case: str, window: object | None = "auto") -> OverlayPicture:
    """Overlay of one evaluated case: its scan (if the evaluation recorded an image folder),
    reference (solid) and prediction (dashed), put on the reference grid.

    Raises:
        KeyError: ``case`` is not in the evaluation.
        MedsegError: a file that cannot be read any more.
    """
    image, ref, pred = load_case(result, case)
    return render_overlay(image, ref, pred, result.labels, window=window, title=case_title(result, case))


def write_case_overlays(
    result: EvaluationResult,
    out_dir: str | Path,
    cases: list[str] | None = None,
    window: object | None = "auto",
) -> list[Path]:
    """Write ``<case>.png`` overlays into ``out_dir`` (every case by default)."""
    from medseg.progress import track
    from medseg.reporting.figures import save_png

    out = Path(out_dir)
    written = []
    for case in track(cases or result.cases, "drawing overlays"):
        picture = render_case(result, case, window=window)
        written.append(save_png(picture.png, out / f"{case}.png"))
    return written
