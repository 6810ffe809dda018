"""Find DICOM files under a path and group them into image series.

Files are grouped by SeriesInstanceUID. A series whose images differ in size,
orientation or pixel spacing (a localizer filed with its series, say) is split
into sub-series named ``UID#1``, ``UID#2``..., largest first, so nothing is
stacked that does not belong together and the user can pick one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import (
    AmbiguousSeriesError,
    CorruptFileError,
    InputNotFoundError,
    NoImageDataError,
)
from medseg.progress import track

log = logging.getLogger(__name__)

#: Modalities/SOP classes that hold no image to stack (they are reported, not read).
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "DOC"}
_SKIP_NAMES = {"DICOMDIR"}


@dataclass
class DicomSeries:
    """The files of one image series (or sub-series), with their headers."""

    id: str
    series_uid: str
    files: list[Path]
    headers: list[Any]  # pydicom Datasets read without pixel data
    split_reason: str | None = None

    @property
    def first(self) -> Any:
        return self.headers[0]

    def summary(self) -> dict[str, Any]:
        """Description for listings: id, modality, number, description, files, size."""
        ds = self.first
        n_frames = sum(int(getattr(h, "NumberOfFrames", 1) or 1) for h in self.headers)
        return {
            "id": self.id,
            "series_uid": self.series_uid,
            "modality": str(getattr(ds, "Modality", "") or ""),
            "series_number": _int_or_none(getattr(ds, "SeriesNumber", None)),
            "description": str(getattr(ds, "SeriesDescription", "") or ""),
            "n_files": len(self.files),
            "n_frames": n_frames,
            "rows": int(getattr(ds, "Rows", 0) or 0),
            "columns": int(getattr(ds, "Columns", 0) or 0),
            "split_reason": self.split_reason,
        }

    def label(self) -> str:
        s = self.summary()
        desc = f" '{s['description']}'" if s["description"] else ""
        return f"{self.id} ({s['modality']}{desc}, {s['n_files']} files, {s['rows']}x{s['columns']})"


@dataclass
class DicomScan:
    """Result of scanning a path: image series plus what was skipped and why."""

    root: Path
    series: list[DicomSeries] = field(default_factory=list)
    not_dicom: list[Path] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    non_image: list[tuple[Path, str]] = field(default_factory=list)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def looks_like_dicom(path: Path) -> bool:
    """True when the file carries the DICM magic (Part 10) or a .dcm/.ima suffix."""
    from medseg.io.formats import DICOM

    if path.suffix.lower() in DICOM.suffixes:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_header(path: Path) -> Any:
    """Read a DICOM header without pixel data; None when the file is not DICOM.

    Raises:
        CorruptFileError: the file claims to be DICOM but cannot be parsed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except Exception as exc:
        raise CorruptFileError(f"{path}: {exc}") from exc
    if not looks_like_dicom(path) and path.suffix:
        return None
    try:  # files without the 128-byte preamble (old or hand-made)
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:
        return None
    if "SOPInstanceUID" not in ds and "SeriesInstanceUID" not in ds:
        return None
    return ds


def _candidate_files(path: Path, exclude: Path | None = None) -> list[Path]:
    if path.is_file():
        return [path]
    files = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).parts
        if not p.is_file() or any(part.startswith(".") for part in rel) or p.name.upper() in _SKIP_NAMES:
            continue  # hidden files and folders, DICOMDIR indexes
        if exclude is not None and exclude in p.resolve().parents:
            continue
        files.append(p)
    return files


def _geometry_key(ds: Any) -> tuple:
    iop = getattr(ds, "ImageOrientationPatient", None)
    ps = getattr(ds, "PixelSpacing", None)
    if iop is None and "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PlaneOrientationSequence" in shared:
            iop = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        if "PixelMeasuresSequence" in shared:
            ps = shared.PixelMeasuresSequence[0].PixelSpacing
    iop_key = tuple(round(float(v), 3) for v in iop) if iop is not None else None
    ps_key = tuple(round(float(v), 4) for v in ps) if ps is not None else None
    return (int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0), iop_key, ps_key)


def scan_dicom(path: str | Path, exclude: Path | None = None) -> DicomScan:
    """Scan a file or folder (recursively) for DICOM image series.

    Raises:
        InputNotFoundError: ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise InputNotFoundError(f"no such file or folder: {root}", hint="check the path")
    scan = DicomScan(root=root)
    by_uid: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    files = _candidate_files(root, exclude)
    for f in track(files, "reading DICOM headers", min_items=50):
        try:
            ds = read_header(f)
        except CorruptFileError as exc:
            scan.corrupt.append((f, str(exc)))
            continue
        if ds is None:
            scan.not_dicom.append(f)
            continue
        modality = str(getattr(ds, "Modality", "") or "").upper()
        if modality in NON_IMAGE_MODALITIES or "Rows" not in ds:
            scan.non_image.append((f, modality or "no image"))
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "") or f"no-series-uid:{f.parent}"
        by_uid[uid].append((f, ds))
    for uid, items in by_uid.items():
        groups: dict[tuple, list[tuple[Path, Any]]] = defaultdict(list)
        for f, ds in items:
            groups[_geometry_key(ds)].append((f, ds))
        ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        if len(ordered) == 1:
            scan.series.append(DicomSeries(uid, uid, [f for f, _ in items], [ds for _, ds in items]))
            continue
        for n, (key, members) in enumerate(ordered, start=1):
            reason = f"size {key[0]}x{key[1]}, orientation {key[2]}, pixel spacing {key[3]}"
            scan.series.append(
                DicomSeries(
                    f"{uid}#{n}",
                    uid,
                    [f for f, _ in members],
                    [ds for _, ds in members],
                    split_reason=reason,
                )
            )
    scan.series.sort(key=lambda s: (_int_or_none(getattr(s.first, "SeriesNumber", None)) or 0, s.id))
    return scan


def select_series(scan: DicomScan, series: str | None = None) -> DicomSeries:
    """Pick one series from a scan.

    Args:
        scan: Result of :func:`scan_dicom`.
        series: A series id (SeriesInstanceUID, or ``UID#n`` for a sub-series), or a
            SeriesNumber that is unique in the folder. None is allowed when the
            folder holds exactly one series.

    Raises:
        NoImageDataError: no image series was found.
        AmbiguousSeriesError: several series and none (or an unknown one) selected.
    """
    if not scan.series:
        detail = []
        if scan.corrupt:
            detail.append(f"{len(scan.corrupt)} corrupt DICOM file(s), e.g. {scan.corrupt[0][1]}")
        if scan.non_image:
            kinds = sorted({k for _, k in scan.non_image})
            detail.append(f"{len(scan.non_image)} non-image DICOM object(s) ({', '.join(kinds)})")
        if scan.not_dicom:
            detail.append(f"{len(scan.not_dicom)} file(s) that are not DICOM")
        where = "file" if scan.root.is_file() else "folder"
        if scan.root.is_file() and scan.corrupt:
            raise CorruptFileError(
                f"cannot read DICOM file {scan.root}: {scan.corrupt[0][1]}",
                hint="check that the file is complete (re-export or re-transfer it)",
            )
        what = "; ".join(detail) if detail else "it is empty"
        raise NoImageDataError(
            f"no DICOM image series in {where} {scan.root}: {what}",
            hint="point medseg at a folder of DICOM image files or at a NIfTI/NRRD/MHA file",
        )
    if series is None:
        if len(scan.series) == 1:
            return scan.series[0]
        listing = "; ".join(s.label() for s in scan.series)
        raise AmbiguousSeriesError(
            f"{scan.root} holds {len(scan.series)} image series: {listing}",
            hint="choose one with --series ID (or convert them all with --all)",
        )
    for s in scan.series:
        if s.id == series:
            return s
    if series in {s.series_uid for s in scan.series}:
        subs = [s for s in scan.series if s.series_uid == series]
        listing = "; ".join(s.label() for s in subs)
        raise AmbiguousSeriesError(
            f"series {series} mixes images of different geometry and was split: {listing}",
            hint="choose a part with --series UID#n",
        )
    by_number = [
        s for s in scan.series if str(_int_or_none(getattr(s.first, "SeriesNumber", None))) == series
    ]
    if len(by_number) == 1:
        return by_number[0]
    listing = "; ".join(s.label() for s in scan.series)
    raise AmbiguousSeriesError(
        f"no series {series!r} in {scan.root}; it holds: {listing}",
        hint="pass one of the listed ids to --series",
    )
