"""One record per 2D image frame of a DICOM series, whatever the file layout.

Three layouts are unified here:

* classic single-frame files (one slice per file);
* enhanced multi-frame files (per-frame functional groups give each frame's
  position, orientation, spacing and rescale);
* Siemens mosaics (one file tiles all slices of a volume; the CSA header gives
  the number of tiles and the slice normal).

:mod:`medseg.io.dicom.assemble` stacks the frames; it never looks at files.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import CorruptFileError, UnsupportedFormatError


@dataclass
class Frame:
    """Geometry and identity of one 2D frame (all positions in LPS+ mm)."""

    path: Path
    position: np.ndarray  # centre of the first transmitted pixel (row 0, column 0)
    row_dir: np.ndarray  # direction in which the column index increases (IOP[:3])
    col_dir: np.ndarray  # direction in which the row index increases (IOP[3:])
    row_spacing: float  # mm between rows (PixelSpacing[0])
    col_spacing: float  # mm between columns (PixelSpacing[1])
    rows: int
    cols: int
    slope: float = 1.0
    intercept: float = 0.0
    instance_number: int = 0
    acquisition_number: int | None = None
    temporal_index: float | None = None
    sop_uid: str = ""
    frame_index: int | None = None  # frame in a multi-frame file
    mosaic_tile: int | None = None  # tile in a Siemens mosaic
    mosaic_grid: int = 0  # tiles per mosaic row

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)


def _floats(value: Any, n: int, what: str, path: Path) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(f"{path}: unreadable {what}: {value!r}") from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise CorruptFileError(f"{path}: {what} must hold {n} numbers, got {value!r}")
    if what == "PixelSpacing" and np.any(arr <= 0):
        raise CorruptFileError(f"{path}: PixelSpacing must be positive, got {value!r}")
    if what == "ImageOrientationPatient" and (
        np.linalg.norm(arr[:3]) < 1e-6
        or np.linalg.norm(arr[3:]) < 1e-6
        or np.linalg.norm(np.cross(arr[:3], arr[3:])) < 1e-3
    ):
        raise CorruptFileError(f"{path}: ImageOrientationPatient {value!r} does not define a plane")
    return arr


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float | None = None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _temporal(ds: Any) -> float | None:
    for tag in ("TemporalPositionIdentifier", "TemporalPositionIndex", "TriggerTime"):
        v = _float(getattr(ds, tag, None))
        if v is not None:
            return v
    return None


def is_mosaic(ds: Any) -> bool:
    """True for a Siemens mosaic image (ImageType holds MOSAIC)."""
    image_type = [str(v).upper() for v in (getattr(ds, "ImageType", None) or [])]
    return "MOSAIC" in image_type


def frames_from_header(ds: Any, path: Path) -> list[Frame]:
    """The frames one DICOM file contributes (header only; pixels are read later)."""
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise UnsupportedFormatError(
            f"{path}: colour DICOM ({ds.PhotometricInterpretation}) is not a scan medseg can segment",
            hint="select a greyscale CT/MR/PET series",
        )
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _multiframe_frames(ds, path)
    if is_mosaic(ds):
        return _mosaic_frames(ds, path)
    return [_single_frame(ds, path)]


def _single_frame(ds: Any, path: Path) -> Frame:
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if tag not in ds:
            raise UnsupportedFormatError(
                f"{path}: DICOM image without {tag}, so its position in the patient is unknown",
                hint="medseg reads cross-sectional images (CT, MR, PET); this looks like a "
                "projection or secondary capture",
            )
    iop = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path)
    ps = _floats(ds.PixelSpacing, 2, "PixelSpacing", path)
    return Frame(
        path=path,
        position=_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", path),
        row_dir=iop[:3] / np.linalg.norm(iop[:3]),
        col_dir=iop[3:] / np.linalg.norm(iop[3:]),
        row_spacing=float(ps[0]),
        col_spacing=float(ps[1]),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        slope=_float(getattr(ds, "RescaleSlope", None), 1.0) or 1.0,
        intercept=_float(getattr(ds, "RescaleIntercept", None), 0.0) or 0.0,
        instance_number=_int(getattr(ds, "InstanceNumber", None), 0) or 0,
        acquisition_number=_int(getattr(ds, "AcquisitionNumber", None)),
        temporal_index=_temporal(ds),
        sop_uid=str(getattr(ds, "SOPInstanceUID", "") or ""),
    )


def _group_item(ds: Any, per_frame: Any, name: str) -> Any:
    """A functional group macro from the per-frame item, else from the shared groups."""
    if per_frame is not None and name in per_frame:
        return per_frame[name].value[0]
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if shared and name in shared[0]:
        return shared[0][name].value[0]
    return None


def _multiframe_frames(ds: Any, path: Path) -> list[Frame]:
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    per_frame_seq = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame_seq) != n:
        raise CorruptFileError(
            f"{path}: NumberOfFrames is {n} but there are {len(per_frame_seq)} per-frame groups"
        )
    frames = []
    for f in range(n):
        item = per_frame_seq[f]
        pos = _group_item(ds, item, "PlanePositionSequence")
        ori = _group_item(ds, item, "PlaneOrientationSequence")
        meas = _group_item(ds, item, "PixelMeasuresSequence")
        if pos is None or ori is None or meas is None:
            raise UnsupportedFormatError(
                f"{path}: multi-frame image without plane position/orientation/pixel measures",
                hint="medseg reads cross-sectional enhanced CT/MR/PET objects",
            )
        iop = _floats(ori.ImageOrientationPatient, 6, "ImageOrientationPatient", path)
        ps = _floats(meas.PixelSpacing, 2, "PixelSpacing", path)
        transform = _group_item(ds, item, "PixelValueTransformationSequence")
        content = _group_item(ds, item, "FrameContentSequence")
        temporal = None
        if content is not None:
            temporal = _float(getattr(content, "TemporalPositionIndex", None))
        frames.append(
            Frame(
                path=path,
                position=_floats(pos.ImagePositionPatient, 3, "ImagePositionPatient", path),
                row_dir=iop[:3] / np.linalg.norm(iop[:3]),
                col_dir=iop[3:] / np.linalg.norm(iop[3:]),
                row_spacing=float(ps[0]),
                col_spacing=float(ps[1]),
                rows=int(ds.Rows),
                cols=int(ds.Columns),
                slope=_float(getattr(transform, "RescaleSlope", None), 1.0) or 1.0,
                intercept=_float(getattr(transform, "RescaleIntercept", None), 0.0) or 0.0,
                instance_number=f,
                acquisition_number=_int(getattr(ds, "AcquisitionNumber", None)),
                temporal_index=temporal,
                sop_uid=str(getattr(ds, "SOPInstanceUID", "") or ""),
                frame_index=f,
            )
        )
    return frames


def _mosaic_frames(ds: Any, path: Path) -> list[Frame]:
    """Unpack the geometry of a Siemens mosaic into one frame per tile."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns that its DICOM readers are experimental
        from nibabel.nicom import csareader

        try:
            csa = csareader.get_csa_header(ds, "image")
        except Exception as exc:
            raise CorruptFileError(f"{path}: unreadable Siemens CSA header: {exc}") from exc
    n_tiles = csareader.get_n_mosaic(csa) if csa else None
    normal = csareader.get_slice_normal(csa) if csa else None
    if n_tiles is None:
        n_tiles = _int(ds.get((0x0019, 0x100A)).value) if (0x0019, 0x100A) in ds else None
    if not n_tiles or normal is None:
        raise UnsupportedFormatError(
            f"{path} is a Siemens mosaic without a readable number of tiles or slice normal "
            "in its CSA header, so its slices cannot be placed",
            hint="convert it with the scanner's unmosaiced export or dcm2niix",
        )
    base = _single_frame(ds, path)
    grid = math.ceil(math.sqrt(n_tiles))
    if base.rows % grid or base.cols % grid:
        raise CorruptFileError(f"{path}: mosaic of {base.rows}x{base.cols} is not a {grid}x{grid} grid")
    tile_rows, tile_cols = base.rows // grid, base.cols // grid
    # Siemens gives the position of the top-left pixel of the whole mosaic; move it to
    # the top-left pixel of a tile (the mosaic is centred on the tiles).
    corner = (
        base.position
        + base.row_dir * base.col_spacing * (base.cols - tile_cols) / 2.0
        + base.col_dir * base.row_spacing * (base.rows - tile_rows) / 2.0
    )
    normal = np.asarray(normal, dtype=np.float64)
    normal /= np.linalg.norm(normal)
    gap = _float(getattr(ds, "SpacingBetweenSlices", None)) or _float(getattr(ds, "SliceThickness", None))
    if not gap:
        raise UnsupportedFormatError(f"{path}: mosaic without slice spacing or thickness")
    frames = []
    for t in range(n_tiles):
        frames.append(
            Frame(
                path=path,
                position=corner + t * gap * normal,
                row_dir=base.row_dir,
                col_dir=base.col_dir,
                row_spacing=base.row_spacing,
                col_spacing=base.col_spacing,
                rows=tile_rows,
                cols=tile_cols,
                slope=base.slope,
                intercept=base.intercept,
                instance_number=base.instance_number,
                acquisition_number=base.acquisition_number,
                temporal_index=base.temporal_index,
                sop_uid=base.sop_uid,
                mosaic_tile=t,
                mosaic_grid=grid,
            )
        )
    return frames


def frame_pixels(frame: Frame, pixels: np.ndarray) -> np.ndarray:
    """The stored (unscaled) 2D pixels of ``frame`` from its file's ``pixel_array``."""
    if frame.mosaic_tile is not None:
        r, c = divmod(frame.mosaic_tile, frame.mosaic_grid)
        return pixels[r * frame.rows : (r + 1) * frame.rows, c * frame.cols : (c + 1) * frame.cols]
    if frame.frame_index is not None and pixels.ndim == 3:
        return pixels[frame.frame_index]
    if pixels.ndim != 2:
        raise CorruptFileError(f"{frame.path}: unexpected pixel array of shape {pixels.shape}")
    return pixels
