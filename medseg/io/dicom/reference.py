"""The source DICOM series a SEG or RTSTRUCT refers to, and masks placed on its grid
(PS3.3 C.7.6.2 Image Plane: ImagePositionPatient, ImageOrientationPatient, PixelSpacing).

medseg reads a DICOM series in dcm2niix's voxel order: ``i`` is the DICOM column,
``j`` the DICOM row *reversed* and ``k`` the slice, ascending along the slice
normal. So slice ``k`` is the file ``sop_instance_uids[k]`` and DICOM pixel
(row ``r``, column ``c``) of that file is ``array[c, Rows - 1 - r, k]``.
:func:`frames_from_array` and :func:`array_from_frames` convert between the two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg import geometry
from medseg.errors import GeometryMismatchError, SeriesGeometryError, UnsupportedFormatError
from medseg.volume import Volume

log = logging.getLogger(__name__)

#: Patient and study attributes copied from the source into SEG/RTSTRUCT: the Type 1 and 2
#: attributes of the Patient and General Study modules, which attach an object to its study.
PATIENT_STUDY_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


@dataclass
class ReferenceSeries:
    """A single-frame 3D DICOM series that exports and imports refer to.

    Attributes:
        folder: Where it was read from.
        series_id: The series id (as ``medseg info`` lists it).
        datasets: Headers (no pixel data) of the slice files, ascending along the normal.
        files: Paths of those files, in the same order.
        affine: RAS affine of medseg's (dcm2niix-order) grid.
        shape: ``(columns, rows, slices)`` of that grid.
        meta: The volume metadata (UIDs, SOP instance UIDs per source slice...).
        slice_index: Grid slice ``k`` of each source slice. ``0..n-1`` for a regular
            series; for an irregular one (imports only) the grid is the regular grid
            ``read_volume(..., resample_uneven=True)`` gives and the source slices
            land on some of its slices.
    """

    folder: Path
    series_id: str
    datasets: list[Any]
    files: list[Path]
    affine: np.ndarray
    shape: tuple[int, int, int]
    meta: Any
    slice_index: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.slice_index:
            self.slice_index = list(range(len(self.datasets)))

    @property
    def regular(self) -> bool:
        """True when every grid slice is a source slice."""
        return self.slice_index == list(range(self.shape[2]))

    def to_grid(self, frames: np.ndarray) -> np.ndarray:
        """Frames ``[source slice, row, column, ...]`` -> ``[grid k, row, column, ...]`` (zeros
        where the grid has no source slice)."""
        if self.regular:
            return frames
        out = np.zeros((self.shape[2], *frames.shape[1:]), dtype=frames.dtype)
        out[self.slice_index] = frames
        return out

    @property
    def rows(self) -> int:
        """DICOM Rows."""
        return int(self.shape[1])

    @property
    def columns(self) -> int:
        """DICOM Columns."""
        return int(self.shape[0])

    @property
    def sop_instance_uids(self) -> list[str]:
        """SOPInstanceUID of each source slice (ascending along the normal)."""
        return list(self.meta.sop_instance_uids)

    @property
    def sop_class_uid(self) -> str:
        """SOPClassUID of the slices."""
        return str(self.datasets[0].SOPClassUID)

    @property
    def frame_of_reference_uid(self) -> str | None:
        """FrameOfReferenceUID of the series."""
        return self.meta.frame_of_reference_uid

    @property
    def study_uid(self) -> str | None:
        """StudyInstanceUID of the series."""
        return self.meta.study_uid

    @property
    def series_uid(self) -> str:
        """SeriesInstanceUID of the series."""
        return str(self.meta.series_uid)

    def pixel_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping DICOM ``(column, row, slice k)`` indices to LPS millimetres."""
        unflip = geometry.flip_axis_affine(geometry.LPS_TO_RAS @ self.affine, 1, self.rows)
        return unflip

    def slice_position(self, k: int) -> np.ndarray:
        """ImagePositionPatient (LPS) of source slice ``k``, as written in its file."""
        return np.array([float(v) for v in self.datasets[k].ImagePositionPatient])

    def describe(self) -> str:
        """One-line description of the grid, for error messages."""
        return describe_grid(self.affine, self.shape)

    def empty_volume(self, dtype: Any = np.uint8) -> Volume:
        """A zero volume on this grid."""
        return Volume(np.zeros(self.shape, dtype=dtype), self.affine.copy(), replace(self.meta))


def describe_grid(affine: np.ndarray, shape: tuple[int, ...]) -> str:
    """``512x512x20, spacing 0.977x0.977x2 mm, LAS, origin (...)``."""
    sp = "x".join(f"{s:.4g}" for s in geometry.spacing(affine))
    org = ", ".join(f"{o:.2f}" for o in geometry.origin(affine))
    dims = "x".join(str(int(s)) for s in shape[:3])
    return f"{dims}, spacing {sp} mm, {geometry.orientation_code(affine)}, origin ({org})"


def load_reference(
    reference_dir: str | Path, series: str | None = None, allow_irregular: bool = False
) -> ReferenceSeries:
    """Read the headers of the source series (no pixel data) and check it can be referenced.

    Args:
        reference_dir: Folder (or file) of the DICOM series.
        series: Which series, when the folder holds several.
        allow_irregular: Accept a series with uneven spacing or missing slices (for
            imports: the label map is then on the regular grid medseg resamples such a
            series onto). Exports always need a regular series.

    Raises:
        InputNotFoundError / NoImageDataError: no such folder or no image series in it.
        AmbiguousSeriesError: several series and ``series`` does not pick one.
        SeriesGeometryError: the series is 4D, tilted, or irregular (unless allowed).
        UnsupportedFormatError: multi-frame or mosaic images, or missing identifiers.
    """
    from medseg.io.dicom import plan_dicom_series, scan_dicom, select_series

    folder = Path(reference_dir)
    chosen = select_series(scan_dicom(folder), series)
    label = (
        f"reference series in {folder}"
        if chosen.id.startswith("no-series-uid:")
        else f"reference series {chosen.id} in {folder}"
    )
    try:
        plan = plan_dicom_series(chosen, resample_uneven=allow_irregular)
    except SeriesGeometryError as exc:
        raise SeriesGeometryError(
            f"{label} cannot be referenced: {exc.message}",
            hint="a SEG or RTSTRUCT refers to the original slices, so export onto a regular series",
        ) from None
    if len(plan.shape) == 4:
        raise SeriesGeometryError(
            f"{label} is a 4D series ({plan.shape[3]} volumes at each slice position); a SEG or "
            "RTSTRUCT of a 3D mask cannot tell which time point it belongs to",
            hint="split the series (one folder per time point) and use one of them",
        )
    frames = [f for group in plan.layout.slices for f in group]
    if any(f.frame_index is not None or f.mosaic_tile is not None for f in frames):
        raise UnsupportedFormatError(
            f"{label} is stored as multi-frame or mosaic images; medseg exports onto series of "
            "single-frame images only",
            hint="convert the series to single-frame images (e.g. with dcm2niix/dicom3tools) first",
        )
    if plan.layout.tilt_deg:
        raise SeriesGeometryError(
            f"{label} is gantry-tilted ({plan.layout.tilt_deg:.1f} degrees): its slices are not on one "
            "orthogonal grid, so masks cannot be placed on them exactly",
            hint="use a series reconstructed without tilt",
        )
    header_by_path = {Path(p): ds for p, ds in zip(chosen.files, chosen.headers)}
    files = [Path(group[0].path) for group in plan.layout.slices]
    datasets = _complete_identifiers([header_by_path[p] for p in files], label)
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    if len(set(uids)) != len(uids):
        raise UnsupportedFormatError(
            f"{label}: several slices share one SOPInstanceUID, so they cannot be referenced"
        )
    meta = replace(
        plan.meta,
        sop_instance_uids=uids,
        study_uid=str(datasets[0].StudyInstanceUID),
        series_uid=str(datasets[0].SeriesInstanceUID),
        warnings=list(plan.meta.warnings),
    )
    shape = tuple(int(s) for s in plan.shape[:3])
    slice_index = list(range(len(files)))
    if plan.resample is not None:
        # depth of each source slice along the grid's slice axis -> grid index
        lps = geometry.LPS_TO_RAS @ plan.affine
        step = lps[:3, 2]
        depth = (plan.layout.positions - lps[:3, 3]) @ step / float(step @ step)
        slice_index = [int(v) for v in np.rint(depth)]
        if np.max(np.abs(depth - np.rint(depth))) > 0.01 or len(set(slice_index)) != len(slice_index):
            raise SeriesGeometryError(
                f"{label}: its slices do not fall on one regular grid ({'; '.join(plan.layout.problems)})",
                hint="labels cannot be placed exactly on such a series",
            )
        meta.warnings = [
            f"irregular series ({'; '.join(plan.layout.problems)}): labels are on the regular grid "
            "read_volume(..., resample_uneven=True) gives it, on the slices that exist in the series"
        ]
    return ReferenceSeries(folder, chosen.id, datasets, files, plan.affine, shape, meta, slice_index)


def _complete_identifiers(datasets: list[Any], label: str) -> list[Any]:
    """Headers with the identifiers a reference needs, repaired where that is lossless.

    Empty SOPInstanceUID/SOPClassUID are taken from the file meta (Media Storage SOP
    Instance/Class UID, which the standard makes equal to them). Empty StudyInstanceUID
    or SeriesInstanceUID (some de-identification tools blank them) get a substitute
    derived from the FrameOfReferenceUID, with a warning: the export then references
    the images by instance and frame of reference, but will not file into their study.
    """
    from pydicom.uid import generate_uid

    first = datasets[0]
    frame_of_reference = str(getattr(first, "FrameOfReferenceUID", "") or "")
    if not frame_of_reference:
        raise UnsupportedFormatError(
            f"{label} has no FrameOfReferenceUID, so a SEG or RTSTRUCT could not be placed in its space",
            hint="export onto the original (not de-identified) series",
        )
    substitutes = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not str(getattr(first, keyword, "") or ""):
            substitutes[keyword] = generate_uid(entropy_srcs=[frame_of_reference, keyword])
            log.warning(
                "%s has no %s (de-identified?): using the substitute %s; exports reference the images "
                "by instance and frame of reference but will not file into their study in a PACS",
                label,
                keyword,
                substitutes[keyword],
            )
    out = []
    for ds in datasets:
        fixes = dict(substitutes)
        file_meta = getattr(ds, "file_meta", None)
        for keyword, meta_keyword in (
            ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
            ("SOPClassUID", "MediaStorageSOPClassUID"),
        ):
            if not str(getattr(ds, keyword, "") or ""):
                value = str(getattr(file_meta, meta_keyword, "") or "") if file_meta is not None else ""
                if not value:
                    raise UnsupportedFormatError(
                        f"{label}: a slice has no {keyword} (nor {meta_keyword}), so it cannot be referenced",
                        hint="export onto the original (not de-identified) series",
                    )
                fixes[keyword] = value
        if not fixes:
            out.append(ds)
            continue
        repaired = header_copy(ds)
        for keyword, value in fixes.items():
            setattr(repaired, keyword, value)
        out.append(repaired)
    return out


def header_copy(ds: Any, drop: set[str] | frozenset[str] = frozenset()) -> Any:
    """A new dataset holding the same (still encoded) root elements as ``ds``, less the
    keywords in ``drop``; changing it leaves ``ds`` untouched."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.dataset import Dataset

    out = Dataset()
    for tag, element in ds.items():
        if drop and keyword_for_tag(tag) in drop:
            continue
        out[tag] = element
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    return out


def frames_from_array(array: np.ndarray) -> np.ndarray:
    """``[i, j, k, ...]`` (dcm2niix order) -> DICOM frames ``[k, row, column, ...]``."""
    arr = np.asarray(array)[:, ::-1]
    axes = (2, 1, 0, *range(3, arr.ndim))
    return np.ascontiguousarray(np.transpose(arr, axes))


def array_from_frames(frames: np.ndarray) -> np.ndarray:
    """DICOM frames ``[k, row, column, ...]`` -> ``[i, j, k, ...]`` (dcm2niix order)."""
    arr = np.transpose(np.asarray(frames), (2, 1, 0, *range(3, np.asarray(frames).ndim)))
    return np.ascontiguousarray(arr[:, ::-1])


def grid_tolerance(affine: np.ndarray) -> float:
    """Largest corner distance (mm) at which two grids are treated as the same: 1% of a voxel."""
    return max(1e-3, 0.01 * min(geometry.spacing(affine)))


def place_on_grid(
    mask: Volume, affine: np.ndarray, shape: tuple[int, int, int], what: str, target: str
) -> np.ndarray:
    """The voxels of ``mask`` on the grid ``(affine, shape)``, exactly (no interpolation).

    The mask may be on that grid or on any permutation/flip of its axes (a NIfTI
    written in another orientation); anything else is refused.

    Raises:
        GeometryMismatchError: the mask's grid is not the target grid.
    """
    tol = grid_tolerance(affine)
    array = mask.array
    if geometry.same_grid(mask.affine, mask.spatial_shape, affine, shape, tol):
        return array
    ornt = geometry.axis_permutation(mask.affine, affine)
    if ornt is not None:
        import nibabel.orientations as nio

        moved = nio.apply_orientation(array, ornt)
        moved_affine = mask.affine @ nio.inv_ornt_aff(ornt, array.shape[:3])
        if geometry.same_grid(moved_affine, moved.shape[:3], affine, shape, tol):
            return np.ascontiguousarray(moved)
    raise GeometryMismatchError(
        f"{what} ({describe_grid(mask.affine, mask.spatial_shape)}) is not on the grid of {target} "
        f"({describe_grid(affine, shape)})",
        hint="give a mask made on this series (e.g. predicted from it or from its NIfTI conversion), "
        "or resample it onto the series grid first",
    )
