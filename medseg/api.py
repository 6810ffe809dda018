"""Package-level operations behind the ``medseg`` commands (the CLI only parses arguments).

Everything here is usable from Python; the CLI adds argument parsing and
turns :class:`~medseg.errors.MedsegError` into one line and an exit code.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.volume import Volume

log = logging.getLogger(__name__)


def inspect(path: str | Path, series: str | None = None) -> list[dict[str, Any]]:
    """Geometry and metadata reports for a scan, or for each series in a DICOM folder.

    DICOM series are described from their headers alone (no pixel data is decoded).
    A series that cannot be read gets a report with an ``error`` entry instead.
    """
    from medseg.io import DICOM, detect_format, read_volume

    fmt = detect_format(path)
    if fmt is not DICOM:
        return [read_volume(path).describe()]
    from medseg.io.dicom import plan_dicom_series, scan_dicom, select_series

    scan = scan_dicom(path)
    chosen = [select_series(scan, series)] if series or len(scan.series) <= 1 else scan.series
    reports = []
    for s in chosen:
        try:
            plan = plan_dicom_series(s, resample_uneven=True)
        except MedsegError as exc:
            if len(chosen) == 1:
                raise  # a single unreadable series is an error, not a report
            reports.append({"series_id": s.id, "error": str(exc), **s.summary()})
            continue
        affine_only = Volume(np.zeros((1, 1, 1), dtype=np.uint8), plan.affine, plan.meta)
        report = affine_only.describe()
        report.update(
            shape=list(plan.shape),
            dtype="(not decoded)",
            n_volumes=int(plan.shape[3]) if len(plan.shape) == 4 else 1,
            series_id=s.id,
            regular=plan.regular,
        )
        if not plan.regular:
            report["warnings"].append(
                "convert refuses this series unless --resample-uneven is given; the grid shown "
                "is the resampled one"
            )
        reports.append(report)
    return reports


def _prepare_output(output: Path, overwrite: bool) -> None:
    from medseg.io.formats import writer_for

    writer_for(output)  # raises UnsupportedFormatError for a suffix medseg does not write
    if output.exists() and not overwrite:
        raise MedsegError(f"{output} already exists", hint="pass --overwrite to replace it")


def _windowed(volume: Volume, window: str | None) -> Volume:
    if not window:
        return volume
    from medseg.transforms.intensity import apply_window, parse_window

    w = parse_window(window)
    out = volume.with_array(apply_window(volume.array, w))
    out.meta.warnings.append(f"CT window level {w.level:g} width {w.width:g} applied, scaled to [0, 1]")
    return out


def convert(
    input: str | Path,
    output: str | Path,
    series: str | None = None,
    resample_uneven: bool = False,
    slice_spacing: float | None = None,
    window: str | None = None,
    overwrite: bool = False,
    reference: str | Path | None = None,
    labels: str | Path | None = None,
    overlap: str = "error",
) -> Path:
    """Read ``input`` and write it to ``output`` (format from the extension), atomically.

    A DICOM SEG or RTSTRUCT ``input`` becomes a label map on the grid of its source
    series ``reference`` (see :func:`medseg.export.read_label_object`; ``series``
    then selects the reference series, ``labels`` and ``overlap`` apply).
    """
    from medseg.io import read_volume, write_volume

    out = Path(output)
    _prepare_output(out, overwrite)
    from medseg.export import label_object_kind

    if label_object_kind(input):
        from medseg.export import read_label_object

        mask = read_label_object(input, reference, labels=labels, overlap=overlap, series=series)
        return write_volume(mask, out)
    if reference is not None:
        raise MedsegError(
            f"--reference applies to DICOM SEG and RTSTRUCT inputs, and {input} is neither",
            hint="drop --reference to convert a scan",
        )
    volume = read_volume(input, series=series, resample_uneven=resample_uneven, slice_spacing=slice_spacing)
    volume = _windowed(volume, window)
    for w in volume.meta.warnings:
        log.warning("%s", w)
    return write_volume(volume, out)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "series"


def convert_all(
    input: str | Path,
    output_dir: str | Path,
    extension: str = "nii.gz",
    resample_uneven: bool = False,
    slice_spacing: float | None = None,
    window: str | None = None,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Convert every image series of a DICOM folder into ``output_dir``.

    Files are named ``S<number>_<description>_<uid tail>.<extension>``. A series that
    fails is reported in the returned list (``status`` holds the reason) and the
    others are still converted.
    """
    from medseg.io import write_volume
    from medseg.io.dicom import read_dicom_series, scan_dicom, select_series

    scan = scan_dicom(input)
    if not scan.series:
        select_series(scan)  # raises the "no image series" error
    out_dir = Path(output_dir)
    results = []
    for s in scan.series:
        summary = s.summary()
        number = summary["series_number"]
        stem = _safe_name(f"S{number if number is not None else 0:03d}_{summary['description']}_{s.id[-8:]}")
        target = out_dir / f"{stem}.{extension.lstrip('.')}"
        entry = {"series_id": s.id, "output": str(target), "status": "ok"}
        try:
            _prepare_output(target, overwrite)
            volume = read_dicom_series(s, resample_uneven=resample_uneven, slice_spacing=slice_spacing)
            write_volume(_windowed(volume, window), target)
        except MedsegError as exc:
            entry["status"] = f"failed: {exc}"
        results.append(entry)
    return results
