"""Reading a DICOM Segmentation (SEG, PS3.3 A.51 / C.8.20 Segmentation Image) as a label map,
through highdicom.

With a reference series the label map is on that series' grid (frames placed by the
source instances they reference, else by geometry); without, on the SEG's own
geometry. Label values: matched by segment label to a labels file, else the value
medseg recorded in the Segment Description (``medseg label value 5``), else the
Segment Number.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg import geometry
from medseg.errors import CorruptFileError, GeometryMismatchError, MedsegError
from medseg.io.dicom.objects import (
    LabelObjectKind,
    OverlapPolicy,
    combine_structures,
    label_object_meta,
    read_dicom_object,
    recorded_label_value,
    require_kind,
)
from medseg.io.dicom.reference import (
    ReferenceSeries,
    array_from_frames,
    describe_grid,
    grid_tolerance,
    load_reference,
)
from medseg.io.guard import guarded_reader
from medseg.labels import LabelSet, LabelSource, load_labels
from medseg.volume import Volume, VolumeMeta

log = logging.getLogger(__name__)


def _segment_values(
    seg: Any, label_set: LabelSet | None, notes: list[str]
) -> tuple[list[int], list[int], list[str]]:
    """Segment numbers to import, their label values and names."""
    numbers, values, names = [], [], []
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        name = str(getattr(item, "SegmentLabel", "") or f"Segment {number}")
        if label_set is not None:
            match = label_set.find(name)
            if match is None:
                notes.append(f"segment {number} {name!r} is not in the labels file, left out")
                continue
            value = match.index
        else:
            value = recorded_label_value(getattr(item, "SegmentDescription", None)) or number
        numbers.append(number)
        values.append(value)
        names.append(name)
    return numbers, values, names


def _hd_volume_to_medseg(array: np.ndarray, affine_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """highdicom volume ``[slice, row, column, ...]`` with its LPS affine -> medseg array
    in dcm2niix order (column, row reversed, slice along the normal) and RAS affine."""
    arr = np.transpose(array, (2, 1, 0, *range(3, array.ndim)))
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # medseg (i, j, k) -> hd (k, j, i)
    lps = affine_lps @ perm
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    if float(np.dot(normal, lps[:3, 2])) < 0:
        arr = arr[:, :, ::-1]
        lps = geometry.flip_axis_affine(lps, 2, arr.shape[2])
    arr = arr[:, ::-1]
    lps = geometry.flip_axis_affine(lps, 1, arr.shape[1])
    return np.ascontiguousarray(arr), geometry.LPS_TO_RAS @ lps


@guarded_reader("DICOM SEG")
def read_seg(
    path: str | Path,
    reference_dir: str | Path | ReferenceSeries | None = None,
    labels: LabelSource | None = None,
    overlap: OverlapPolicy | str = OverlapPolicy.ERROR,
    series: str | None = None,
) -> Volume:
    """Read a DICOM SEG as a label map (through highdicom).

    With ``reference_dir`` the label map is on the grid of that series (as
    :func:`medseg.io.read_volume` reads it); without, on the SEG's own geometry, which
    spans only the slices the SEG stores.

    Label values: with ``labels``, segments are matched to labels by name; otherwise
    a value medseg recorded is restored, else the segment number is used. FRACTIONAL
    segments are thresholded at 0.5.

    Raises:
        GeometryMismatchError: the SEG is in another frame of reference or not on the
            reference grid.
        OverlapError: overlapping segments with ``overlap="error"``.
    """
    import highdicom as hd

    source = str(path)
    ds = read_dicom_object(path)
    require_kind(ds, LabelObjectKind.SEG, path)
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except Exception as exc:
        raise CorruptFileError(f"{path}: highdicom cannot read this SEG: {exc}") from None
    label_set = load_labels(labels) if labels is not None else None
    notes: list[str] = []
    numbers, values, names = _segment_values(seg, label_set, notes)
    if not numbers:
        raise MedsegError(
            f"{source}: no segment to import ({'; '.join(notes) or 'the SEG has no segments'})",
            hint="name the segments in the labels file as the SEG does (segment labels)",
        )
    if len(set(values)) != len(values):
        raise MedsegError(f"{source}: several segments map to the same label value ({values})")
    if reference_dir is None:
        stacked, affine = _own_geometry(seg, numbers, source)
        meta = VolumeMeta(frame_of_reference_uid=str(getattr(ds, "FrameOfReferenceUID", "")) or None)
        notes.append("no reference series given: the grid spans only the slices stored in the SEG")
    else:
        ref = (
            reference_dir
            if isinstance(reference_dir, ReferenceSeries)
            else load_reference(reference_dir, series, allow_irregular=True)
        )
        stacked = _on_reference(seg, ds, ref, numbers, source)
        affine, meta = ref.affine, ref.meta
        notes = list(ref.meta.warnings) + notes
    for note in notes:
        log.warning("%s: %s", source, note)
    masks = [
        stacked[..., n] > 0.5 if stacked.dtype.kind == "f" else stacked[..., n] > 0
        for n in range(len(numbers))
    ]
    array, split = combine_structures(masks, values, names, overlap, source)
    structures = [
        {"channel" if split else "value": (c if split else v), "name": nm, "segment_number": s}
        for c, (s, v, nm) in enumerate(zip(numbers, values, names))
    ]
    meta = label_object_meta(meta, ds, LabelObjectKind.SEG, source, notes, structures)
    return Volume(array, affine, meta)


def _on_reference(seg: Any, ds: Any, ref: ReferenceSeries, numbers: list[int], source: str) -> np.ndarray:
    """``[i, j, k, segment]`` on the reference grid."""
    seg_for = str(getattr(ds, "FrameOfReferenceUID", "") or "")
    if seg_for and ref.frame_of_reference_uid and seg_for != ref.frame_of_reference_uid:
        raise GeometryMismatchError(
            f"{source} is in frame of reference {seg_for} but reference series {ref.series_id} is in "
            f"{ref.frame_of_reference_uid}",
            hint="give the series the SEG was made on (its ReferencedSeriesSequence names it)",
        )
    referenced = {str(uid) for _, _, uid in seg.get_source_image_uids()}
    if referenced and referenced <= set(ref.sop_instance_uids):
        try:
            frames = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=ref.sop_instance_uids,
                segment_numbers=numbers,
                combine_segments=False,
                assert_missing_frames_are_empty=True,
                ignore_spatial_locations=True,
            )
            return array_from_frames(ref.to_grid(frames))
        except (ValueError, RuntimeError, KeyError, AttributeError) as exc:
            log.info("%s: reading by source instance failed (%s); placing frames by geometry", source, exc)
    stacked, affine = _own_geometry(seg, numbers, source)
    return _embed(stacked, affine, ref, source)


def _own_geometry(seg: Any, numbers: list[int], source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=False)
    except (ValueError, RuntimeError) as exc:
        raise GeometryMismatchError(
            f"{source}: the SEG frames do not form a regular volume ({exc})",
            hint="give --reference with the source series",
        ) from None
    return _hd_volume_to_medseg(np.asarray(volume.array), np.asarray(volume.affine))


def _embed(stacked: np.ndarray, affine: np.ndarray, ref: ReferenceSeries, source: str) -> np.ndarray:
    """Place a sub-grid of the reference grid (same spacing and axes) into it."""
    m = geometry.voxel_to_voxel(affine, ref.affine)
    tol = grid_tolerance(ref.affine) / min(geometry.spacing(ref.affine))
    if stacked.shape[2] == 1:
        m[:3, 2] = (0.0, 0.0, 1.0)  # a single slice has no meaningful slice step
    if not (
        np.allclose(m[:3, :3], np.eye(3), atol=tol) and np.allclose(m[:3, 3], np.rint(m[:3, 3]), atol=tol)
    ):
        raise GeometryMismatchError(
            f"{source} ({describe_grid(affine, stacked.shape)}) is not on the grid of reference series "
            f"{ref.series_id} ({ref.describe()})",
            hint="give the series the SEG was made on",
        )
    offset = np.rint(m[:3, 3]).astype(int)
    out = np.zeros((*ref.shape, stacked.shape[3]), dtype=stacked.dtype)
    lo = np.maximum(offset, 0)
    hi = np.minimum(offset + np.array(stacked.shape[:3]), ref.shape)
    if np.any(hi <= lo):
        raise GeometryMismatchError(f"{source} lies outside reference series {ref.series_id}")
    src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset))
    inside = stacked[src]
    if inside.sum() != stacked.sum():
        log.warning("%s: part of the segmentation lies outside the reference series and is dropped", source)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = inside
    return out
