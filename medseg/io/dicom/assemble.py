"""Stack the frames of one DICOM series into a :class:`~medseg.volume.Volume`.

Rules (each one a classic source of flipped or shifted masks elsewhere):

* slices are ordered by their position along the slice normal
  (``cross(row, column)``), never by InstanceNumber or file name;
* the slice step comes from ImagePositionPatient, never from SliceThickness;
* several frames at one position make a 4D series (time points or repeated
  acquisitions), ordered by temporal position, acquisition number, then
  instance number; they are never stacked as extra slices;
* uneven spacing, missing slices and gantry tilt are detected; such a series
  is refused unless resampling is asked for, and then it is resampled in
  world space onto a regular grid;
* rescale slope/intercept are applied frame by frame (CT comes out in HU): int16 when
  every rescaled value fits, else float32; without rescaling the stored type is kept;
* the voxel order follows dcm2niix (columns along i, rows along j *reversed*,
  slices along k ascending along the normal), so medseg's grids coincide
  with dcm2niix conversions and the masks made on them;
* LPS world coordinates are converted to RAS here, once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg import geometry
from medseg.errors import CorruptFileError, MissingDependencyError, SeriesGeometryError
from medseg.io.dicom.frames import Frame, frame_pixels, frames_from_header
from medseg.io.dicom.regrid import regular_grid_for, resample_stack
from medseg.io.dicom.scan import DicomSeries
from medseg.progress import track
from medseg.volume import Volume, VolumeMeta

log = logging.getLogger(__name__)

#: Frames closer than this along the normal are at the same slice position (mm).
SAME_POSITION_MM = 0.01
#: Orientation cosines may differ by this much within a series.
ORIENTATION_TOL = 1e-3


@dataclass
class StackLayout:
    """How the frames of a series form a grid (in LPS)."""

    slices: list[list[Frame]]  # per slice position (ascending along the normal), frames in time order
    row_dir: np.ndarray
    col_dir: np.ndarray
    normal: np.ndarray
    positions: np.ndarray  # (n_slices, 3)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tilt_deg: float = 0.0

    @property
    def regular(self) -> bool:
        return not self.problems


def _time_key(f: Frame) -> tuple:
    return (
        f.temporal_index if f.temporal_index is not None else float("inf"),
        f.acquisition_number if f.acquisition_number is not None else 0,
        f.instance_number,
        str(f.path),
        f.frame_index or 0,
    )


def _duplicates_note(label: str, slices: list[list[Frame]]) -> str | None:
    """The warning for several images at one position that share an InstanceNumber when no
    temporal or acquisition tag tells them apart: they are copies, not time points. Frames
    without an InstanceNumber (read as 0) prove nothing and are not counted."""
    repeated = sum(
        len({f.instance_number for f in g}) < len(g) for g in slices if all(f.instance_number for f in g)
    )
    if not repeated:
        return None
    return (
        f"{label} has {len(slices[0])} images at each of {len(slices)} slice positions with the same "
        f"instance numbers ({repeated} position(s)) and no temporal or acquisition number to tell them "
        "apart: duplicated slices, most likely the series copied twice into the folder (duplicate "
        "files with new SOP Instance UIDs), read as a 4D series; keep one copy of the series"
    )


def analyse_stack(frames: list[Frame], label: str = "series") -> StackLayout:
    """Work out slice order, 4D layout and regularity of a list of frames.

    Raises:
        SeriesGeometryError: frames disagree in size or orientation, or positions hold
            different numbers of frames (an incomplete 4D series).
    """
    first = frames[0]
    for f in frames[1:]:
        if (f.rows, f.cols) != (first.rows, first.cols):
            raise SeriesGeometryError(
                f"{label} mixes image sizes {first.rows}x{first.cols} and {f.rows}x{f.cols}",
                hint="select one part of the series with --series UID#n",
            )
        if (
            np.max(np.abs(f.row_dir - first.row_dir)) > ORIENTATION_TOL
            or np.max(np.abs(f.col_dir - first.col_dir)) > ORIENTATION_TOL
        ):
            raise SeriesGeometryError(
                f"{label} mixes slice orientations (e.g. {f.path.name} differs from "
                f"{first.path.name}); such slices do not form one volume",
                hint="select one part of the series with --series UID#n",
            )
        if abs(f.row_spacing - first.row_spacing) > 1e-4 or abs(f.col_spacing - first.col_spacing) > 1e-4:
            raise SeriesGeometryError(
                f"{label} mixes pixel spacings {first.row_spacing}x{first.col_spacing} and "
                f"{f.row_spacing}x{f.col_spacing}",
                hint="select one part of the series with --series UID#n",
            )
    # de-duplicate identical instances (the same file copied twice)
    seen: set[tuple] = set()
    unique = []
    for f in frames:
        key = (f.sop_uid, f.frame_index, f.mosaic_tile) if f.sop_uid else (id(f),)
        if key in seen:
            continue
        seen.add(key)
        unique.append(f)
    frames = unique
    row_dir, col_dir = first.row_dir, first.col_dir
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    depth = np.array([f.position @ normal for f in frames])
    order = np.argsort(depth, kind="stable")
    groups: list[list[Frame]] = []
    last = None
    for idx in order:
        if last is None or depth[idx] - last > SAME_POSITION_MM:
            groups.append([])
        groups[-1].append(frames[idx])
        last = depth[idx] if last is None or depth[idx] - last > SAME_POSITION_MM else last
    counts = sorted({len(g) for g in groups})
    if len(counts) > 1:
        per = defaultdict(int)
        for g in groups:
            per[len(g)] += 1
        detail = ", ".join(f"{n} position(s) with {c} image(s)" for c, n in sorted(per.items()))
        raise SeriesGeometryError(
            f"{label} has an inconsistent number of images per slice position ({detail}): "
            "an incomplete 4D series or repeated slices",
            hint="check that the series was transferred completely",
        )
    layout = StackLayout(
        slices=[sorted(g, key=_time_key) for g in groups],
        row_dir=row_dir,
        col_dir=col_dir,
        normal=normal,
        positions=np.array([sorted(g, key=_time_key)[0].position for g in groups]),
    )
    n_t = counts[0]
    if n_t > 1:
        acq = {f.acquisition_number for f in frames if f.acquisition_number is not None}
        temporal = all(f.temporal_index is not None for f in frames)
        if temporal:
            how = "ordered by temporal position"
        elif len(acq) > 1:
            how = f"one per acquisition: {len(acq)} acquisition numbers"
        else:
            how = "ordered by instance number"
        duplicated = None if temporal or len(acq) > 1 else _duplicates_note(label, layout.slices)
        layout.notes.append(duplicated or f"4D series: {n_t} volumes of {len(groups)} slices ({how})")
        for g in layout.slices:  # in-plane positions of one slice must agree across time
            p = np.array([f.position for f in g])
            if np.max(np.linalg.norm(p - p[0], axis=1)) > 0.05:
                raise SeriesGeometryError(
                    f"{label}: images at one slice position are shifted in-plane between volumes",
                    hint="split the series by acquisition before converting",
                )
    _check_regular(layout, first)
    return layout


def _check_regular(layout: StackLayout, first: Frame) -> None:
    pos = layout.positions
    n = len(pos)
    if n < 2:
        return
    rel = pos - pos[0]
    d = rel @ layout.normal
    gaps = np.diff(d)
    step = (d[-1] - d[0]) / (n - 1)
    deviation = np.max(np.abs(d - (d[0] + step * np.arange(n))))
    tol = max(0.01, 0.1 * step)
    if deviation > tol:
        median = float(np.median(gaps))
        multiples = np.rint(gaps / median)
        whole = np.all((multiples >= 1) & (np.abs(gaps - multiples * median) < 0.1 * median))
        missing = [(k, int(m)) for k, m in enumerate(multiples) if m >= 2] if whole else []
        if missing:
            where = ", ".join(f"after slice {k} ({m - 1} missing)" for k, m in missing[:5])
            layout.problems.append(f"missing slices: gaps of {median:.4g} mm jump {where}")
        else:
            layout.problems.append(
                f"non-uniform slice spacing: steps from {gaps.min():.4g} to {gaps.max():.4g} mm "
                f"(position error {deviation:.3g} mm with one regular step)"
            )
    inplane = rel - np.outer(rel @ layout.normal, layout.normal)
    shift = float(np.max(np.linalg.norm(inplane, axis=1)))
    if shift > max(0.02, 0.1 * min(first.row_spacing, first.col_spacing)):
        extent = abs(d[-1] - d[0])
        layout.tilt_deg = float(np.degrees(np.arctan2(shift, extent))) if extent else 90.0
        layout.problems.append(
            f"gantry tilt: slices are stacked {layout.tilt_deg:.1f} degrees off their normal"
        )


def _decode(path: Path) -> np.ndarray:
    import pydicom

    ds = None
    try:
        ds = pydicom.dcmread(str(path))
        return ds.pixel_array
    except (ImportError, RuntimeError, NotImplementedError) as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        if "plugin" in str(exc).lower() or "missing" in str(exc).lower() or isinstance(exc, ImportError):
            raise MissingDependencyError(
                f"{path}: no decoder for the transfer syntax {name}",
                hint="install the decoders: pip install pylibjpeg pylibjpeg-openjpeg "
                "pylibjpeg-libjpeg pylibjpeg-rle",
            ) from exc
        raise CorruptFileError(f"{path}: cannot decode pixel data ({name}): {exc}") from exc
    except Exception as exc:
        raise CorruptFileError(
            f"{path}: cannot read pixel data: {exc}",
            hint="the file is probably truncated; re-export or re-transfer it",
        ) from exc


def _stack_pixels(layout: StackLayout) -> np.ndarray:
    """Array [column, row, slice, time] with rescale applied."""
    frames = [f for g in layout.slices for f in g]
    paths = sorted({f.path for f in frames})
    pixels = {p: _decode(p) for p in track(paths, "reading DICOM pixels", min_items=50)}
    first = frames[0]
    n_z, n_t = len(layout.slices), len(layout.slices[0])
    raw_dtype = pixels[first.path].dtype
    integral = all(float(f.slope).is_integer() and float(f.intercept).is_integer() for f in frames)
    identity = all(f.slope == 1.0 and f.intercept == 0.0 for f in frames)
    out_dtype = raw_dtype if identity else (np.int32 if integral else np.float32)
    out = np.empty((first.cols, first.rows, n_z, n_t), dtype=out_dtype)
    for k, group in enumerate(layout.slices):
        for t, f in enumerate(group):
            px = frame_pixels(f, pixels[f.path])
            if px.shape != (f.rows, f.cols):
                raise CorruptFileError(
                    f"{f.path}: pixel data of shape {px.shape} do not match Rows x Columns {f.rows}x{f.cols}"
                )
            if identity:
                out[:, :, k, t] = px.T
            elif integral:
                out[:, :, k, t] = px.T.astype(np.int32) * int(f.slope) + int(f.intercept)
            else:
                out[:, :, k, t] = px.T.astype(np.float32) * np.float32(f.slope) + np.float32(f.intercept)
    if integral and not identity and out.size:
        out = out.astype(_rescaled_dtype(int(out.min()), int(out.max())))
    return out


def _rescaled_dtype(lo: int, hi: int) -> type[np.generic]:
    """The type of integral rescaled values from ``lo`` to ``hi``: int16 when they fit (CT in
    HU: stored 0..4095 with intercept -1024 gives -1024..3071), else float32, exact for
    integers up to 2**24 (float64 beyond, which no CT reaches)."""
    info = np.iinfo(np.int16)
    if info.min <= lo and hi <= info.max:
        return np.int16
    return np.float32 if max(-lo, hi) <= 2**24 else np.float64


@dataclass
class SeriesPlan:
    """Everything known about a series from its headers: grid, warnings, metadata."""

    layout: StackLayout
    shape: tuple[int, ...]  # output array shape, [i, j, k] or [i, j, k, t]
    affine: np.ndarray  # RAS affine of the output grid
    meta: VolumeMeta
    resample: dict | None = None  # regrid offsets when the series is resampled

    @property
    def regular(self) -> bool:
        return self.layout.regular


def plan_dicom_series(
    series: DicomSeries,
    resample_uneven: bool = False,
    slice_spacing: float | None = None,
) -> SeriesPlan:
    """Work out the output grid of a series from its headers alone (no pixel data).

    Raises:
        SeriesGeometryError: irregular series without ``resample_uneven``, or frames
            that cannot form one grid.
    """
    frames: list[Frame] = []
    for path, ds in zip(series.files, series.headers):
        frames.extend(frames_from_header(ds, path))
    label = f"DICOM series {series.id}"
    layout = analyse_stack(frames, label)
    if layout.problems and not resample_uneven:
        raise SeriesGeometryError(
            f"{label} does not form a regular grid: " + "; ".join(layout.problems),
            hint="pass --resample-uneven (resample_uneven=True) to resample it in world space "
            "onto a regular grid",
        )
    first = layout.slices[0][0]
    warnings = list(layout.notes)
    n_t = len(layout.slices[0])
    offsets = None
    if layout.problems:
        spatial, affine_lps, offsets = regular_grid_for(
            layout.positions,
            layout.row_dir,
            layout.col_dir,
            layout.normal,
            first.cols,
            first.rows,
            first.col_spacing,
            first.row_spacing,
            slice_spacing,
        )
        offsets["shape"] = np.array(spatial)
        warnings.extend(layout.problems)
        warnings.append(
            f"resampled onto a regular grid of {spatial[0]}x{spatial[1]}x{spatial[2]} at "
            f"{offsets['s'][0]:.4g} mm slice spacing (linear interpolation in world space)"
        )
    else:
        spatial = (first.cols, first.rows, len(layout.positions))
        affine_lps = np.eye(4)
        affine_lps[:3, 0] = layout.row_dir * first.col_spacing
        affine_lps[:3, 1] = layout.col_dir * first.row_spacing
        n_z = len(layout.positions)
        if n_z > 1:
            affine_lps[:3, 2] = (layout.positions[-1] - layout.positions[0]) / (n_z - 1)
        else:
            affine_lps[:3, 2] = layout.normal * _single_slice_thickness(series.first)
        affine_lps[:3, 3] = layout.positions[0]
    # dcm2niix voxel order: rows reversed
    affine_lps = geometry.flip_axis_affine(affine_lps, 1, spatial[1])
    shape = tuple(spatial) + ((n_t,) if n_t > 1 else ())
    meta = _series_meta(series, layout, warnings)
    return SeriesPlan(layout, shape, geometry.LPS_TO_RAS @ affine_lps, meta, offsets)


def _single_slice_thickness(ds) -> float:
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(getattr(ds, tag))
        except (TypeError, ValueError, AttributeError):
            continue
        if value > 0:
            return value
    return 1.0


def read_dicom_series(
    series: DicomSeries,
    resample_uneven: bool = False,
    slice_spacing: float | None = None,
) -> Volume:
    """Read one DICOM series into a Volume (3D, or 4D for time series).

    Args:
        series: A series from :func:`medseg.io.dicom.scan.scan_dicom`.
        resample_uneven: Resample a series with uneven spacing, missing slices or
            gantry tilt onto a regular grid instead of refusing it.
        slice_spacing: Slice spacing (mm) of that regular grid; default the median
            step along the slice normal.

    Raises:
        SeriesGeometryError: irregular series without ``resample_uneven``, or frames
            that cannot form one grid.
    """
    plan = plan_dicom_series(series, resample_uneven, slice_spacing)
    data = _stack_pixels(plan.layout)
    if plan.resample is not None:
        spatial = tuple(int(v) for v in plan.resample["shape"])
        fill = float(data.min()) if data.size else 0.0
        vols = [resample_stack(data[..., t], spatial, plan.resample, fill) for t in range(data.shape[3])]
        resampled = np.stack(vols, axis=-1)
        if np.issubdtype(data.dtype, np.integer):
            info = np.iinfo(data.dtype)
            resampled = np.clip(np.rint(resampled), info.min, info.max).astype(data.dtype)
        data = resampled
    data = data[:, ::-1]  # dcm2niix voxel order: rows reversed (matches plan.affine)
    if data.shape[3] == 1:
        data = data[..., 0]
    for w in plan.meta.warnings:
        log.info("DICOM series %s: %s", series.id, w)
    return Volume(np.ascontiguousarray(data), plan.affine, plan.meta)


def _series_meta(series: DicomSeries, layout: StackLayout, warnings: list[str]) -> VolumeMeta:
    ds = series.first
    tilt = getattr(ds, "GantryDetectorTilt", None)
    try:
        if tilt is not None and abs(float(tilt)) > 0.01 and not layout.tilt_deg:
            warnings.append(
                f"GantryDetectorTilt is {float(tilt):g} degrees but the slice "
                "positions are already on the normal (no correction needed)"
            )
    except (TypeError, ValueError):
        pass
    time_spacing = None
    if len(layout.slices[0]) > 1:
        try:
            time_spacing = float(ds.RepetitionTime) / 1000.0
        except (AttributeError, TypeError, ValueError):
            time_spacing = None

    def text(tag: str) -> str | None:
        v = getattr(ds, tag, None)
        return str(v) if v not in (None, "") else None

    try:
        number = int(ds.SeriesNumber)
    except (AttributeError, TypeError, ValueError):
        number = None
    return VolumeMeta(
        modality=text("Modality"),
        series_uid=series.series_uid,
        study_uid=text("StudyInstanceUID"),
        frame_of_reference_uid=text("FrameOfReferenceUID"),
        series_description=text("SeriesDescription"),
        series_number=number,
        n_files=len(series.files),
        source=str(Path(series.files[0]).parent) if len(series.files) > 1 else str(series.files[0]),
        source_format="dicom",
        warnings=warnings,
        time_spacing=time_spacing,
        sop_instance_uids=[g[0].sop_uid for g in layout.slices],
    )
