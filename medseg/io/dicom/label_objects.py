"""One entry point for DICOM label objects: a SEG or an RTSTRUCT -> label map.

This is what a manifest entry naming a SEG/RTSTRUCT as its label calls (training and
evaluation read labels through it), and what ``medseg convert`` uses.
"""

from __future__ import annotations

from pathlib import Path

from medseg.errors import MedsegError, UnsupportedFormatError
from medseg.io.dicom.objects import LabelObjectKind, OverlapPolicy, object_kind, read_dicom_object
from medseg.io.formats import is_image
from medseg.labels import LabelSource
from medseg.volume import Volume


def label_object_kind(path: str | Path) -> LabelObjectKind | None:
    """SEG or RTSTRUCT when ``path`` is such a DICOM file, else None (cheap: reads the
    header only; never raises for non-DICOM files)."""
    import pydicom

    p = Path(path)
    if not p.is_file() or is_image(p):  # files of the format table are never label objects
        return None
    try:
        ds = pydicom.dcmread(str(p), stop_before_pixels=True, force=True)
    except Exception:
        return None
    return object_kind(ds)


def read_label_object(
    path: str | Path,
    reference_dir: str | Path | None = None,
    labels: LabelSource | None = None,
    overlap: OverlapPolicy | str = OverlapPolicy.ERROR,
    series: str | None = None,
) -> Volume:
    """Read a DICOM SEG or RTSTRUCT as a label map on the grid of its source series.

    The reference series is required for an RTSTRUCT; a SEG without one is read on its
    own geometry (the slices it stores).

    Args:
        path: The SEG or RTSTRUCT file.
        reference_dir: Folder of the source DICOM series.
        labels: Optional labels: structures are matched to label values by name, and
            structures not named are left out.
        overlap: ``error`` (default), ``last`` or ``split`` (see :class:`OverlapPolicy`).
        series: Which series of ``reference_dir`` (when it holds several).

    Raises:
        UnsupportedFormatError: not a SEG or RTSTRUCT.
        MedsegError: subclasses for geometry, overlap, missing reference.
    """
    ds = read_dicom_object(path)
    kind = object_kind(ds)
    if kind is LabelObjectKind.SEG:
        from medseg.io.dicom.seg_read import read_seg

        return read_seg(path, reference_dir, labels=labels, overlap=overlap, series=series)
    if kind is LabelObjectKind.RTSTRUCT:
        if reference_dir is None:
            raise MedsegError(
                f"{path} is an RTSTRUCT: its contours can only be rasterised on the image series "
                "they were drawn on",
                hint="give that series with --reference DICOM_FOLDER",
            )
        from medseg.io.dicom.rtstruct_read import read_rtstruct

        return read_rtstruct(path, reference_dir, labels=labels, overlap=overlap, series=series)
    raise UnsupportedFormatError(
        f"{path} is not a DICOM SEG or RTSTRUCT (modality {getattr(ds, 'Modality', 'unknown')})",
        hint="give a Segmentation or RT Structure Set file",
    )
