"""Reading an RT Structure Set (RTSTRUCT) as a label map on its source series.

The CLOSED_PLANAR contours of each ROI (PS3.3 C.8.8.6 ROI Contour) are filled on the
reference grid with the rules of :mod:`medseg.io.dicom.contours` (pixel centres on a
contour belong to the ROI; elsewhere the even-odd rule, so inner contours are holes).
POINT and OPEN contours (markers, isocentres) enclose nothing and are skipped with a
note, as are contours that lie on no slice of the reference series.

Frames of reference (PS3.3 C.8.8.5 Structure Set): a structure set may cover several
image series in different frames of reference (a CT and a registered MR). Each ROI is
placed by its own frame, ``StructureSetROISequence[i].ReferencedFrameOfReferenceUID``;
ROIs in a frame other than the reference series' are left out, named in one warning,
and the file is refused only when none of its ROIs is in the reference's frame. The
order of the items in the file never changes the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import GeometryMismatchError, MedsegError
from medseg.io.dicom.contours import fill_contours
from medseg.io.dicom.objects import (
    LabelObjectKind,
    OverlapPolicy,
    combine_structures,
    label_object_meta,
    read_dicom_object,
    require_kind,
)
from medseg.io.dicom.reference import ReferenceSeries, array_from_frames, load_reference
from medseg.io.guard import guarded_reader
from medseg.labels import LabelSet, LabelSource, load_labels
from medseg.volume import Volume

log = logging.getLogger(__name__)

#: Contour Data (3006,0050): x\y\z triplets in LPS millimetres (PS3.3 C.8.8.6).
CONTOUR_DATA_TAG = 0x30060050
#: The Contour Geometric Type whose contours enclose an area (PS3.3 C.8.8.6.1).
CLOSED_PLANAR = "CLOSED_PLANAR"


def contour_points(item: Any) -> np.ndarray:
    """Contour Data of a contour item as floats (parsed directly when still encoded)."""
    if CONTOUR_DATA_TAG not in item:
        return np.zeros(0)
    value = item.get_item(CONTOUR_DATA_TAG).value
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="replace").strip("\x00 ")
        return np.array([float(v) for v in text.split("\\") if v.strip()], dtype=np.float64)
    if value is None:
        return np.zeros(0)
    values = value if isinstance(value, (list, tuple)) or hasattr(value, "__len__") else [value]
    return np.asarray([float(v) for v in values], dtype=np.float64)


@dataclass
class RoiContours:
    """One ROI of an RTSTRUCT: its number, name, colour, frame of reference and contours.

    ``frame_of_reference_uid`` is the ROI's Referenced Frame of Reference UID, or, when
    the ROI states none, the only frame the file lists (None when it lists several).
    """

    number: int
    name: str
    color: tuple[int, int, int] | None
    frame_of_reference_uid: str | None
    contours: list[np.ndarray] = field(default_factory=list)  # CLOSED_PLANAR, (n, 3) each, LPS mm
    other_contours: dict[str, int] = field(default_factory=dict)  # other geometric types: count
    interpreted_type: str | None = None


def listed_frames(ds: Any) -> set[str]:
    """Every frame of reference the structure set lists (ReferencedFrameOfReferenceSequence
    items, and a root FrameOfReferenceUID that some writers add), as a set: order-free."""
    frames = {
        str(getattr(item, "FrameOfReferenceUID", "") or "")
        for item in ds.get("ReferencedFrameOfReferenceSequence", [])
    }
    frames.add(str(getattr(ds, "FrameOfReferenceUID", "") or ""))
    frames.discard("")
    return frames


def _add_contours(roi: RoiContours, item: Any) -> None:
    color = getattr(item, "ROIDisplayColor", None)
    if color is not None and len(color) == 3:
        roi.color = tuple(int(c) for c in color)
    for contour in getattr(item, "ContourSequence", []):
        kind = str(getattr(contour, "ContourGeometricType", "") or "")
        data = contour_points(contour)
        if kind == CLOSED_PLANAR and data.size >= 3 and data.size % 3 == 0:
            roi.contours.append(data.reshape(-1, 3))
        else:
            roi.other_contours[kind or "unknown"] = roi.other_contours.get(kind or "unknown", 0) + 1


def parse_rtstruct(path_or_dataset: str | Path | Any) -> list[RoiContours]:
    """The ROIs of an RTSTRUCT with their contours, by ROI Number (no images needed).

    Raises:
        UnsupportedFormatError: not an RTSTRUCT. CorruptFileError: unreadable.
    """
    if isinstance(path_or_dataset, (str, Path)):
        ds = read_dicom_object(path_or_dataset)
        require_kind(ds, LabelObjectKind.RTSTRUCT, path_or_dataset)
    else:
        ds = path_or_dataset
    frames = listed_frames(ds)
    only_frame = next(iter(frames)) if len(frames) == 1 else None
    rois: dict[int, RoiContours] = {}
    for item in getattr(ds, "StructureSetROISequence", []):
        number = int(item.ROINumber)
        name = str(getattr(item, "ROIName", "") or f"ROI {number}")
        frame = str(getattr(item, "ReferencedFrameOfReferenceUID", "") or "") or only_frame
        rois[number] = RoiContours(number, name, None, frame)
    for item in getattr(ds, "ROIContourSequence", []):
        number = int(item.ReferencedROINumber)
        _add_contours(rois.setdefault(number, RoiContours(number, f"ROI {number}", None, only_frame)), item)
    for item in getattr(ds, "RTROIObservationsSequence", []):
        number = int(getattr(item, "ReferencedROINumber", -1))
        if number in rois:
            rois[number].interpreted_type = str(getattr(item, "RTROIInterpretedType", "") or "") or None
    return [rois[n] for n in sorted(rois)]


def rasterise_roi(roi: RoiContours, ref: ReferenceSeries) -> tuple[np.ndarray, int]:
    """Binary ``[k, row, column]`` grid frames of one ROI, and how many of its closed
    contours lie on no slice of the grid (skipped)."""
    pixel_to_lps = ref.pixel_to_lps()
    to_pixel = np.linalg.inv(pixel_to_lps)
    step = float(np.linalg.norm(pixel_to_lps[:3, 2]))
    frames = np.zeros((ref.shape[2], ref.rows, ref.columns), dtype=bool)
    per_slice: dict[int, list[np.ndarray]] = {}
    off_grid = 0
    for points in roi.contours:
        idx = (to_pixel @ np.c_[points, np.ones(len(points))].T).T[:, :3]  # (column, row, k)
        k = np.rint(idx[:, 2])
        if np.ptp(k) > 0 or np.max(np.abs(idx[:, 2] - k)) * step > max(0.01, 0.1 * step):
            off_grid += 1  # not planar on one slice of the grid
            continue
        kk = int(k[0])
        if not 0 <= kk < ref.shape[2]:
            off_grid += 1
            continue
        per_slice.setdefault(kk, []).append(idx[:, [1, 0]])  # (row, column)
    for kk, contours in per_slice.items():
        frames[kk] = fill_contours(contours, (ref.rows, ref.columns))
    return frames, off_grid


def split_by_frame(
    rois: list[RoiContours], ds: Any, ref: ReferenceSeries, source: str
) -> tuple[list[RoiContours], str | None]:
    """The ROIs on the reference series' frame of reference, and a note naming the others.

    An ROI whose frame is unknown (the file lists several and the ROI names none) counts
    as elsewhere; when the file names no frame at all, every ROI is taken to be on the
    reference's frame.

    Raises:
        GeometryMismatchError: no ROI is on the reference's frame.
    """
    target = ref.frame_of_reference_uid
    if not listed_frames(ds) and not any(r.frame_of_reference_uid for r in rois):
        return rois, None
    here = [r for r in rois if r.frame_of_reference_uid == target]
    elsewhere = [r for r in rois if r.frame_of_reference_uid != target]
    if rois and not here:
        frames = sorted({r.frame_of_reference_uid or "not stated" for r in rois})
        raise GeometryMismatchError(
            f"{source}: no ROI is in frame of reference {target} of reference series {ref.series_id} "
            f"(its ROIs are in {', '.join(frames)})",
            hint="give the image series the structure set was drawn on",
        )
    if not elsewhere:
        return here, None
    names = ", ".join(f"{r.name} ({r.frame_of_reference_uid or 'frame not stated'})" for r in elsewhere)
    return (
        here,
        f"ROIs in another frame of reference than reference series {ref.series_id}, left out: {names}",
    )


@dataclass
class _Rasterised:
    """The ROIs of a structure set filled on the reference grid, with notes on what was left out."""

    masks: list[np.ndarray] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _rasterise_rois(rois: list[RoiContours], ref: ReferenceSeries, label_set: LabelSet | None) -> _Rasterised:
    out = _Rasterised()
    not_named, empty, open_kinds = [], [], {}
    off_grid = 0
    for roi in rois:
        for kind in roi.other_contours:
            open_kinds.setdefault(kind, []).append(roi.name)
        match = label_set.find(roi.name) if label_set is not None else None
        if label_set is not None and match is None:
            not_named.append(roi.name)
            continue
        frames, skipped = rasterise_roi(roi, ref)
        off_grid += skipped
        if not frames.any():
            empty.append(roi.name)
            continue
        out.masks.append(frames)
        out.values.append(match.index if match is not None else roi.number)
        out.names.append(roi.name)
    if not_named:
        out.notes.append(f"ROIs not in the labels file, left out: {', '.join(not_named)}")
    if off_grid:
        out.notes.append(f"{off_grid} closed contour(s) lie on no slice of the reference series, skipped")
    for kind, names in open_kinds.items():
        out.notes.append(f"{kind} contours enclose no area, skipped (ROIs {', '.join(names)})")
    if empty:
        out.notes.append(f"ROIs with no closed contour on the reference series, left out: {', '.join(empty)}")
    return out


def _check_values(found: _Rasterised, source: str, ref: ReferenceSeries) -> None:
    if not found.masks:
        raise MedsegError(
            f"{source}: no ROI has a closed contour on reference series {ref.series_id}",
            hint="check that --reference is the series the structures were drawn on",
        )
    if min(found.values) < 1 or max(found.values) > 65535:
        raise MedsegError(
            f"{source}: ROI numbers {found.values} do not fit label values 1..65535", hint="give --labels"
        )
    if len(set(found.values)) != len(found.values):
        raise MedsegError(f"{source}: several ROIs map to the same label value", hint="check the labels file")


@guarded_reader("RTSTRUCT")
def read_rtstruct(
    path: str | Path,
    reference_dir: str | Path | ReferenceSeries,
    labels: LabelSource | None = None,
    overlap: OverlapPolicy | str = OverlapPolicy.ERROR,
    series: str | None = None,
) -> Volume:
    """Rasterise an RTSTRUCT onto the grid of its source series, as a label map.

    Label values: with ``labels``, ROIs are matched by name and ROIs not named there
    are left out (and listed in the volume's warnings); otherwise each ROI gets its
    ROI Number. ROIs with no closed contour on the reference grid, and ROIs in another
    frame of reference (module docstring), are left out with a warning.

    Raises:
        GeometryMismatchError: no ROI is in the reference series' frame of reference.
        OverlapError: overlapping ROIs with ``overlap="error"``.
    """
    source = str(path)
    ds = read_dicom_object(path)
    require_kind(ds, LabelObjectKind.RTSTRUCT, path)
    ref = (
        reference_dir
        if isinstance(reference_dir, ReferenceSeries)
        else load_reference(reference_dir, series, allow_irregular=True)
    )
    label_set = load_labels(labels) if labels is not None else None
    rois, frame_note = split_by_frame(parse_rtstruct(ds), ds, ref, source)
    found = _rasterise_rois(rois, ref, label_set)
    notes = list(ref.meta.warnings) + ([frame_note] if frame_note else []) + found.notes
    _check_values(found, source, ref)
    for note in notes:
        log.warning("%s: %s", source, note)
    combined, split = combine_structures(found.masks, found.values, found.names, overlap, source)
    structures = [
        {"channel" if split else "value": (c if split else v), "name": nm}
        for c, (v, nm) in enumerate(zip(found.values, found.names))
    ]
    meta = label_object_meta(ref.meta, ds, LabelObjectKind.RTSTRUCT, source, notes, structures)
    return Volume(array_from_frames(combined), ref.affine.copy(), meta)
